"""A direct write path for WebSocket frames under uvicorn, beside ASGI.

Profiling the fan-out showed the ASGI send path dominating: every
``websocket.send_text`` goes through Starlette's wrappers, uvicorn's ``send``
(an ``await`` on an event), websockets' frame serialiser and one
``transport.write``, about 10 µs a frame; 1,000 clients at 100 diffs/s is a
whole core. Most of that work is the same for every client that gets the same
diff.

This module keeps the FastAPI app and the protocol unchanged and adds an ASGI
*extension*: ``uvicorn_protocols.FastWebSocketProtocol`` (uvicorn's
``websockets-sansio`` protocol, plus a few lines; every uvicorn internal the api
relies on is in that one module) puts a :class:`FastChannel` into each WebSocket
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

import struct
from collections.abc import Callable
from typing import Any

EXTENSION = "tickerhub.fast_send"
# Scope extension set by uvicorn_protocols: a callable the app calls once the
# connection has authenticated (or needs no key); until then nothing it sent is logged.
AUTHENTICATED = "tickerhub.authenticated"

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

    __slots__ = ("_compressed", "_put", "on_writable", "paused_at", "transport")

    def __init__(self, put: Callable[[Any], None], compressed: Callable[[], bool]) -> None:
        # ``put``: queue a receive event for the app (the protocol's mailbox);
        # ``compressed``: whether per-message deflate was negotiated.
        self._put = put
        self._compressed = compressed
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
        mailbox) holds; Starlette accepts any ``websocket.receive``.
        """
        # Deliberately not a typed ASGI receive event (it has neither text nor bytes).
        self._put(_INTERRUPT)

    @property
    def usable(self) -> bool:
        """False when per-message deflate was negotiated: frames would need compressing."""
        return not self._compressed()

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
