"""The two ways a connection's frames leave: one :class:`~tickerhub_api.stream.connection.Sender`
strategy per transport.

* :class:`FastSender` (uvicorn with ``fastpath.FastWebSocketProtocol``): a wake
  marks the connection in the process's :class:`~tickerhub_api.stream.flusher.Flusher`,
  which, once per event-loop turn, writes its frames straight to the transport.
  A client whose transport is paused (its buffer is full: it is not reading) is
  skipped; its diffs keep merging in the outbox and it is flushed again when the
  transport drains. No task or event per connection is involved in sending.
* :class:`AsgiSender` (any other server, the test client, ``WS_FAST_PATH=false``):
  a task per connection awaits ASGI ``send`` for it, so a client that stops
  reading blocks nobody but itself (the server's ``send`` waits while the
  socket's buffer is full).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.fastpath import FastChannel, text_frame
from tickerhub_api.stream.flusher import Flusher
from tickerhub_api.stream.protocol import CloseCode

SendText = Callable[[str], Awaitable[None]]


class FastSender:
    """Frames written synchronously by the :class:`Flusher` to a :class:`FastChannel`.

    On close, the channel interrupts the route's pending ``receive``: the route,
    which only reads, then sends the close frame.
    """

    __slots__ = ("_channel", "_conn", "_flusher")

    def __init__(self, conn: Connection, channel: FastChannel, flusher: Flusher) -> None:
        self._conn = conn
        self._channel = channel
        self._flusher = flusher
        channel.on_writable = self.wake

    def __repr__(self) -> str:
        return repr(self._conn)

    def wake(self) -> None:
        conn = self._conn
        if (
            conn.min_interval is not None
            and self._flusher.scheduled(self)
            and not conn.outbox.queued_frames
        ):
            return  # max_rate: a diff merged while not due; the flusher's timer sends it
        self._flusher.mark(self)

    def close(self) -> None:
        self._channel.interrupt()

    def stuck(self, now: float, timeout: float) -> bool:
        paused_at = self._channel.paused_at
        return paused_at is not None and now - paused_at > timeout

    def fail(self, code: CloseCode) -> None:
        self._conn.close(code)

    def flush(self, framed: dict[str, bytes]) -> None:
        """Write everything pending to the transport, unless it is paused or closed."""
        if self._conn.close_code is not None:
            return
        transport = self._channel.writable_transport
        if transport is None:
            return  # paused (resume_writing wakes us again) or closing
        conn = self._conn
        outbox = conn.outbox
        diff = True
        if conn.min_interval is not None and outbox.has_diff:
            # max_rate: the diff leaves when due; meanwhile it keeps merging.
            now = asyncio.get_running_loop().time()
            if now < conn.next_diff_at:
                self._flusher.later(self, conn.next_diff_at)
                diff = False
            else:
                conn.next_diff_at = now + conn.min_interval
        frame = outbox.take(diff)
        if frame is None:
            return
        data = framed.get(frame)
        if data is None:
            data = framed[frame] = text_frame(frame.encode())
        frames = 1
        frame = outbox.take(diff)
        if frame is not None:  # rare: replies queued before the diff
            chunks = [data]
            while frame is not None:
                data = framed.get(frame)
                if data is None:
                    data = framed[frame] = text_frame(frame.encode())
                chunks.append(data)
                frame = outbox.take(diff)
            data = b"".join(chunks)
            frames = len(chunks)
        transport.write(data)
        flusher = self._flusher
        flusher.writes += 1
        flusher.frames_sent += frames
        flusher.bytes_sent += len(data)


class SendCounts:
    """Frames and bytes the ASGI senders handed to the server (for ``/metrics``).

    Bytes are the frames' text lengths (the server adds 2-10 bytes of framing
    each; our frames are ASCII JSON but for rare non-ASCII news text).
    """

    __slots__ = ("bytes_sent", "frames_sent")

    def __init__(self) -> None:
        self.frames_sent = 0
        self.bytes_sent = 0


class AsgiSender:
    """A task per connection awaiting ASGI ``send``; :meth:`run` is that task's body."""

    def __init__(self, conn: Connection, send: SendText, counts: SendCounts | None = None) -> None:
        self._conn = conn
        self._send = send
        self._counts = counts or SendCounts()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # loop.time() when the send in flight started; the hub's sweep closes stuck ones.
        self.sending_since: float | None = None

    def wake(self) -> None:
        self._ready.set()

    def close(self) -> None:
        self._ready.set()
        if self.sending_since is not None and self._task is not None:
            # Blocked in send() on a client that does not read: waiting is pointless.
            self._task.cancel()

    def stuck(self, now: float, timeout: float) -> bool:
        return self.sending_since is not None and now - self.sending_since > timeout

    async def run(self) -> None:
        """Send until the connection is closed (or the client goes away: ``send`` raises)."""
        self._task = asyncio.current_task()
        conn, ready = self._conn, self._ready
        if conn.outbox:
            ready.set()
        loop = asyncio.get_running_loop()
        outbox = conn.outbox
        counts = self._counts
        try:
            while conn.close_code is None:
                wait = 0.0
                if conn.min_interval is not None and outbox.has_diff:
                    wait = conn.next_diff_at - loop.time()  # max_rate: > 0 while not due
                is_diff = not outbox.queued_frames
                frame = outbox.take(wait <= 0)
                if frame is None:
                    ready.clear()
                    if wait > 0:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(wait):
                                await ready.wait()
                    else:
                        await ready.wait()
                    continue
                if is_diff and conn.min_interval is not None:
                    conn.next_diff_at = loop.time() + conn.min_interval
                self.sending_since = loop.time()
                await self._send(frame)
                self.sending_since = None
                counts.frames_sent += 1
                counts.bytes_sent += len(frame)
        except asyncio.CancelledError:
            if conn.close_code is None:
                raise
        finally:
            self.sending_since = None
