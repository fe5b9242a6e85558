"""One WebSocket client: its watchlist, its outbox, and how its frames leave.

The fan-out never awaits a client: it only fills outboxes and calls
:meth:`Connection.wake`. What happens next depends on the transport:

* Fast path (uvicorn with :class:`~tickerhub_api.fastpath.FastWebSocketProtocol`):
  the connection is marked dirty in the process's :class:`Flusher`, which, once
  per event-loop turn, writes each dirty connection's frames straight to its
  transport. Identical frames are framed once per turn and the same bytes are
  written to every client. A client whose transport is paused (its buffer is
  full: it is not reading) is skipped; its diffs keep merging in the outbox
  and it is flushed again when the transport drains. No task or event per
  connection is involved in sending.
* ASGI path (any other server, the test client): the connection's own sender
  task awaits ``send`` for it, so a client that stops reading blocks nobody but
  itself (uvicorn's ``send`` waits while the socket's buffer is full).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable

from tickerhub_api.fastpath import FastChannel, text_frame
from tickerhub_api.outbox import Outbox

log = logging.getLogger(__name__)

# Close codes, part of the public protocol (docs/protocol.md).
CLOSE_SLOW_CLIENT = 4008  # did not read: a send stayed blocked, or too many replies queued
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011

SendText = Callable[[str], Awaitable[None]]

_ids = itertools.count(1)


class Flusher:
    """Writes dirty fast-path connections' frames once per event-loop turn.

    Marking is cheap (a dict insert; one ``call_soon`` per turn, not per
    connection), and everything the hub fanned out during a turn leaves in one
    write per connection.
    """

    def __init__(self) -> None:
        self._dirty: dict[Connection, None] = {}
        self._handle: asyncio.Handle | None = None
        self.flushes = 0

    def mark(self, conn: Connection) -> None:
        self._dirty[conn] = None
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._handle = None
        self.flushes += 1
        dirty, self._dirty = self._dirty, {}
        # frame text -> framed bytes, for this turn: a diff shared by many clients is
        # encoded and framed once (dict lookups on an identical str are by identity first).
        framed: dict[str, bytes] = {}
        for conn in dirty:
            try:
                conn.flush(framed)
            except Exception:  # one broken connection must not stop the others
                log.exception("flushing %r failed; closing it", conn)
                conn.close(CLOSE_INTERNAL_ERROR)


class Connection:
    """Hashable by identity, so it can live in a :class:`~tickerhub_api.watchers.WatchIndex`."""

    def __init__(self, max_frames: int, flusher: Flusher | None = None) -> None:
        self.id = next(_ids)
        self.outbox = Outbox(max_frames)
        # ``None``: every symbol (no watchlist yet, or ``{"watchlist": null}``).
        self.watch: set[str] | None = None
        # False until the first snapshot is queued (the hub may still be loading).
        self.synced = False
        self.close_code: int | None = None
        # ASGI path: loop.time() when the send in flight started; a sweep closes stuck ones.
        self.sending_since: float | None = None
        self.channel: FastChannel | None = None
        self._flusher = flusher
        self._handler: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"

    def use_channel(self, channel: FastChannel, handler: asyncio.Task[None]) -> None:
        """Send through ``channel`` (fast path); ``handler`` is cancelled to close."""
        if self._flusher is None:
            raise RuntimeError("the fast path needs a Flusher")
        self.channel = channel
        self._handler = handler
        channel.on_writable = self.wake

    def send_frame(self, frame: str) -> None:
        if not self.outbox.push_frame(frame):
            self.close(CLOSE_SLOW_CLIENT)
        self.wake()

    def wake(self) -> None:
        """Call after pushing to :attr:`outbox` directly. On the fan-out's hot path."""
        if self.channel is not None:
            if self.close_code is None:
                self._flusher.mark(self)  # type: ignore[union-attr]
        elif self._ready is not None:
            self._ready.set()

    def close(self, code: int) -> None:
        """Stop sending; the route then closes the socket with ``code``."""
        first = self.close_code is None
        if first:
            self.close_code = code
        if self.channel is not None:
            handler = self._handler
            if first and handler is not None and handler is not asyncio.current_task():
                handler.cancel()  # it is reading; the route turns this into a close
            return
        if self._ready is not None:
            self._ready.set()
        if self.sending_since is not None and self._sender is not None:
            # Blocked in send() on a client that does not read: waiting is pointless.
            self._sender.cancel()

    def stuck(self, now: float, timeout: float) -> bool:
        if self.channel is not None:
            paused_at = self.channel.paused_at
            return paused_at is not None and now - paused_at > timeout
        return self.sending_since is not None and now - self.sending_since > timeout

    # -- fast path -------------------------------------------------------------

    def flush(self, framed: dict[str, bytes]) -> None:
        """Write everything pending to the transport, unless it is paused or closed."""
        channel = self.channel
        if self.close_code is not None or channel is None:
            return
        transport = channel.writable_transport
        if transport is None:
            return  # paused (resume_writing marks us again) or closing
        outbox = self.outbox
        frame = outbox.take()
        if frame is None:
            return
        data = framed.get(frame)
        if data is None:
            data = framed[frame] = text_frame(frame.encode())
        frame = outbox.take()
        if frame is not None:  # rare: replies queued before the diff
            chunks = [data]
            while frame is not None:
                data = framed.get(frame)
                if data is None:
                    data = framed[frame] = text_frame(frame.encode())
                chunks.append(data)
                frame = outbox.take()
            data = b"".join(chunks)
        transport.write(data)

    # -- ASGI path ---------------------------------------------------------------

    async def run_sender(self, send: SendText) -> None:
        """Send until :meth:`close` is called (or the client goes away: ``send`` raises)."""
        self._sender = asyncio.current_task()
        self._ready = ready = asyncio.Event()
        if self.outbox:
            ready.set()
        loop = asyncio.get_running_loop()
        outbox = self.outbox
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
