"""A direct write path for WebSocket frames under uvicorn, beside ASGI.

Profiling the fan-out showed the ASGI send path dominating: every
``websocket.send_text`` goes through Starlette's wrappers, uvicorn's ``send``
(an ``await`` on an event), websockets' frame serialiser and one
``transport.write``, about 10 µs a frame; 1,000 clients at 100 diffs/s is a
whole core. Most of that work is the same for every client that gets the same
diff.

This module keeps the FastAPI app and the protocol unchanged and adds an ASGI
*extension*: :class:`FastWebSocketProtocol` (uvicorn's ``websockets-sansio``
protocol, plus a few lines) puts a :class:`FastChannel` into each WebSocket
scope under ``scope["extensions"]["tickerhub.fast_send"]``. The api then frames
a payload once (:func:`text_frame`) and writes the same bytes to every
transport that wants them, synchronously, from one flush per event-loop turn
(``flusher.Flusher``, through ``senders.FastSender``). Without the extension
(another server, the test client, ``WS_FAST_PATH=false``, per-message deflate
negotiated) the api falls back to plain ASGI sends (``senders.AsgiSender``).

Writing to the transport directly is sound because server-to-client frames
carry no state in the WebSocket protocol (no masking, and uvicorn never
fragments), and :attr:`FastChannel.writable_transport` stops writes once a
close frame was sent or the connection is gone. Flow control is kept: the
transport's ``pause_writing`` (its buffer is over the high-water mark: the
client is not reading) makes the
channel report :attr:`~FastChannel.paused`; the api then stops writing to it and
conflates instead, until ``resume_writing``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

EXTENSION = "tickerhub.fast_send"

_OPCODE_TEXT_FIN = 0x81
# What FastChannel.interrupt queues: a receive event with neither text nor bytes.
_INTERRUPT = {"type": "websocket.receive", EXTENSION: "interrupt"}


def text_frame(payload: bytes) -> bytes:
    """A complete, final, unmasked text frame (RFC 6455 §5.2) around UTF-8 ``payload``."""
    length = len(payload)
    if length < 126:
        return bytes((_OPCODE_TEXT_FIN, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", _OPCODE_TEXT_FIN, 126, length) + payload
    return struct.pack("!BBQ", _OPCODE_TEXT_FIN, 127, length) + payload


class FastChannel:
    """Synchronous frame writes to one uvicorn WebSocket connection."""

    __slots__ = ("_proto", "on_writable", "paused_at", "transport")

    def __init__(self, proto: WebSocketsSansIOProtocol) -> None:
        self._proto = proto
        # Read for every frame, so a plain attribute: the transport from the accept
        # until the app sends its close frame or the connection is lost, else None.
        # (Where uvicorn itself sends a close frame it also closes the transport,
        # which ``writable_transport`` checks.)
        self.transport: Any = None
        # Called when the transport drains after a pause (set by the connection).
        self.on_writable: Callable[[], None] | None = None
        # loop.time() of the pause in force, None while writable.
        self.paused_at: float | None = None

    def interrupt(self) -> None:
        """Wake the app's pending (or next) ``receive`` with a message carrying no data.

        The connection was closed by the server (slow client, shutdown): the
        route, which waits for client frames, sees the close code and sends the
        close frame. uvicorn's ``receive`` returns what its queue (our
        :class:`_Mailbox`) holds; Starlette accepts any ``websocket.receive``.
        """
        # Deliberately not a typed ASGI receive event (it has neither text nor bytes).
        self._proto.queue.put_nowait(_INTERRUPT)  # type: ignore[arg-type]

    @property
    def usable(self) -> bool:
        """False when per-message deflate was negotiated: frames would need compressing."""
        return not self._proto.conn.extensions

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def writable_transport(self) -> Any:
        """The transport when a frame may be written now, else None."""
        transport = self.transport
        if transport is None or self.paused_at is not None or transport.is_closing():
            return None
        return transport


class _Mailbox:
    """What uvicorn needs of its per-connection ``asyncio.Queue``: ``put_nowait``,
    ``get`` and ``empty``, over one list and one future.

    An ``asyncio.Queue`` holds three deques and an Event with a fourth (CPython
    gives every empty deque a 64-slot block): ~3 KiB on each of thousands of
    connections, for a queue that rarely holds more than one message.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items


class _Flag:
    """``asyncio.Event`` as uvicorn uses ``writable`` (``set``/``clear``/``is_set``/``wait``),
    with the waiters' deque made only when someone waits (rare: a paused ASGI send)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        while not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter


class FastWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, exposing a :class:`FastChannel` to the app,
    with lighter per-connection state (see :class:`_Mailbox` and :class:`_Flag`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fast_channel = FastChannel(self)
        # duck types for uvicorn's asyncio.Queue/Event (the methods it calls)
        self.queue = _Mailbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The app's task is created but has not run yet: the scope can still be extended.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][EXTENSION] = self.fast_channel
        # uvicorn keeps the parsed request for the connection's lifetime but never
        # reads it again (the scope has the headers): ~1 KiB per connection.
        self.request = None  # type: ignore[assignment]  # uvicorn types it non-optional

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete:
            # Only the accept reads the handshake response; drop its headers after.
            self.response = None  # type: ignore[assignment]  # uvicorn types it non-optional
        live = self.handshake_complete and not self.close_sent and not self.disconnected
        self.fast_channel.transport = self.transport if live else None

    def pause_writing(self) -> None:
        super().pause_writing()
        self.fast_channel.paused_at = self.loop.time()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.fast_channel.paused_at = None
        callback = self.fast_channel.on_writable
        if callback is not None:
            callback()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        channel = self.fast_channel
        channel.transport = None
        channel.on_writable = None
