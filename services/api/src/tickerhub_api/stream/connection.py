"""One WebSocket client: its watchlist, its outbox, and the strategy its frames leave by.

The fan-out never awaits a client: it only fills outboxes and calls
:meth:`Connection.wake`. How the frames then leave belongs to the connection's
:class:`Sender` (``senders.py``): the fast writer (uvicorn, frames written from
one flush per event-loop turn) or the ASGI sender (a task awaiting ``send``).
"""

from __future__ import annotations

import itertools
import logging
from typing import Protocol

from tickerhub_api.stream.outbox import Outbox
from tickerhub_api.stream.protocol import CloseCode, NewsPoint, ResumePoint

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class Sender(Protocol):
    """How one connection's frames reach its socket (one object per connection)."""

    def wake(self) -> None:
        """The outbox has something: send it (soon). On the fan-out's hot path."""

    def close(self) -> None:
        """The connection was just closed: stop sending and let the route close the socket."""

    def stuck(self, now: float, timeout: float) -> bool:
        """Whether the client has not taken a frame for over ``timeout`` seconds."""


class Unsent:
    """No transport (yet): frames wait in the outbox. Unit tests drain it directly."""

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass

    def stuck(self, now: float, timeout: float) -> bool:
        return False


class Connection:
    """Hashable by identity, so it can live in a
    :class:`~tickerhub_api.stream.watchers.WatchIndex`."""

    def __init__(self, max_frames: int) -> None:
        self.id = next(_ids)
        self.outbox = Outbox(max_frames)
        # ``None``: every symbol (no watchlist yet, or ``{"watchlist": null}``).
        self.watch: set[str] | None = None
        # False until the first snapshot is queued (the hub may still be loading).
        self.synced = False
        self.close_code: CloseCode | None = None
        # The client's close code when it left first (1005: none given; 1006: no close frame).
        self.peer_close_code: int | None = None
        # 1-minute ``bar`` messages for the watched symbols (``{"bars": true}``, ``?bars=1``).
        self.bars = False
        self.sender: Sender = Unsent()
        # Set while the first snapshot waits for the hub's first load: what it must answer.
        self.resume_from: ResumePoint | NewsPoint | None = None
        self.announce_watch = False
        # ``max_rate``: at least this many seconds between two diff messages (None: no
        # limit), and the loop time before which the next may not leave.
        self.min_interval: float | None = None
        self.next_diff_at = 0.0

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"

    def send_frame(self, frame: str) -> None:
        if not self.outbox.push_frame(frame):
            if self.close_code is None:
                log.info("closing %r: too many unread replies (WS_SEND_QUEUE_BOUND)", self)
            self.close(CloseCode.SLOW_CLIENT)
        self.wake()

    def wake(self) -> None:
        """Call after pushing to :attr:`outbox` directly."""
        if self.close_code is None:
            self.sender.wake()

    def close(self, code: CloseCode) -> None:
        """Stop sending; the route then closes the socket with ``code`` (the first one asked)."""
        if self.close_code is None:
            self.close_code = code
            self.sender.close()

    def stuck(self, now: float, timeout: float) -> bool:
        return self.sender.stuck(now, timeout)
