"""One WebSocket client: its watchlist, its outbox and the task that sends to it.

The fan-out never awaits a client: it only fills outboxes and sets events.
Each connection's own sender task does the awaiting, so a client that stops
reading blocks nobody but itself (uvicorn's ``send`` waits while the socket's
buffer is full).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

from tickerhub_api.outbox import Outbox

# Close codes, part of the public protocol (docs/protocol.md).
CLOSE_SLOW_CLIENT = 4008  # did not read: a send stayed blocked, or too many replies queued
CLOSE_GOING_AWAY = 1001

SendText = Callable[[str], Awaitable[None]]

_ids = itertools.count(1)


class Connection:
    """Hashable by identity, so it can live in a :class:`~tickerhub_api.watchers.WatchIndex`."""

    def __init__(self, max_frames: int) -> None:
        self.id = next(_ids)
        self.outbox = Outbox(max_frames)
        # ``None``: every symbol (no watchlist yet, or ``{"watchlist": null}``).
        self.watch: set[str] | None = None
        # False until the first snapshot is queued (the hub may still be loading).
        self.synced = False
        self.close_code: int | None = None
        # loop.time() when the send in flight started; a sweep closes stuck ones.
        self.sending_since: float | None = None
        self._ready = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"

    def send_frame(self, frame: str) -> None:
        if not self.outbox.push_frame(frame):
            self.close(CLOSE_SLOW_CLIENT)
        self._ready.set()

    def wake(self) -> None:
        """Call after pushing to :attr:`outbox` directly."""
        self._ready.set()

    def close(self, code: int) -> None:
        """Ask the sender to stop; the route then closes the socket with ``code``."""
        if self.close_code is None:
            self.close_code = code
        self._ready.set()
        if self.sending_since is not None and self._sender is not None:
            # Blocked in send() on a client that does not read: waiting is pointless.
            self._sender.cancel()

    def stuck(self, now: float, timeout: float) -> bool:
        return self.sending_since is not None and now - self.sending_since > timeout

    async def run_sender(self, send: SendText) -> None:
        """Send until :meth:`close` is called (or the client goes away: ``send`` raises)."""
        self._sender = asyncio.current_task()
        loop = asyncio.get_running_loop()
        outbox = self.outbox
        ready = self._ready
        try:
            while self.close_code is None:
                frame = outbox.take()
                if frame is None:
                    ready.clear()
                    await ready.wait()
                    continue
                self.sending_since = loop.time()
                await send(frame)
                self.sending_since = None
        except asyncio.CancelledError:
            if self.close_code is None:
                raise
        finally:
            self.sending_since = None
