"""Everything that touches uvicorn's internals: its HTTP and WebSocket protocol classes,
subclassed.

uvicorn has no deadline for a connection's first request head: a socket that
connects and sends nothing, or drips one header byte a second, holds a file
descriptor forever (a few thousand of them and the process cannot accept any
more). Its ``websockets-sansio`` protocol also never sends the ``431`` websockets
prepares for an oversized handshake header, and leaves that socket open. What
is added here, on top of uvicorn 0.54 (httptools 0.9 / h11 0.16, websockets 17):

* :class:`_HeadGuard` (mixed into uvicorn's HTTP protocol): every request head
  must be complete within ``Guards.header_timeout`` seconds of its first byte
  (of the connection, for the first request) and within ``Guards.max_head_bytes``;
  else ``408``/``431`` and the socket is closed. The kernel send buffer of every
  accepted socket is bounded (``Guards.send_buffer``).
* :class:`GuardedWebSocketProtocol`: the handshake must be complete (accepted by
  the app) within the same deadline; a rejected handshake's response is sent and
  the socket closed; an invalid UTF-8 text frame is closed with ``1007`` without an
  error traceback; websockets' own DEBUG log of headers and frames is off (keys
  travel in them): the handshake is logged with unknown header values masked,
  client messages only once the app has called the ``AUTHENTICATED`` scope
  extension, and never one that mentions ``auth``.
* :class:`FastWebSocketProtocol`: the above plus the direct frame path's
  ``FastChannel`` in the scope (``stream/fastpath.py``).

``tests/test_uvicorn.py`` fails if a release stops calling what is overridden here.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
from dataclasses import dataclass, field
from typing import Any, cast

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from tickerhub_api.access import redact
from tickerhub_api.limits import WarningThrottle
from tickerhub_api.stream.fastpath import AUTHENTICATED, EXTENSION, FastChannel

log = logging.getLogger(__name__)

# Handshake headers shown in clear in the DEBUG log; every other value is ``***``.
_SHOWN_HEADERS = frozenset(
    {
        "host",
        "origin",
        "user-agent",
        "upgrade",
        "connection",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "x-forwarded-for",
        "x-forwarded-proto",
    }
)

# Seconds a refused connection is still read (and its input dropped) before closing.
LINGER = 2.0

# accept() failures that mean "out of a resource", not a bug (asyncio and uvloop
# report them through the loop's exception handler).
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class Guards:
    """What every connection must do in time and in size (``ApiSettings`` gives the values)."""

    header_timeout: float  # seconds for a complete request head / an accepted handshake
    max_head_bytes: int = 64 * 1024  # a longer request head gets 431
    send_buffer: int = 0  # SO_SNDBUF for accepted sockets; 0: the kernel's default
    warnings: WarningThrottle = field(default_factory=WarningThrottle)

    def warn(self, kind: str, message: str, *args: Any) -> None:
        """``message`` at WARNING, at most once a minute per ``kind``, with a count."""
        count = self.warnings.hit(kind)
        if count is not None:
            log.warning(message + " (%d time(s) since the last such line)", *args, count)


def protocol_classes(guards: Guards, fast: bool) -> tuple[type[asyncio.Protocol], type[Any]]:
    """uvicorn's ``http`` and ``ws`` protocol classes for the api, bound to ``guards``."""
    http_base: type[asyncio.Protocol] = AutoHTTPProtocol
    http = type(f"Guarded{http_base.__name__}", (_HeadGuard, http_base), {"guards": guards})
    ws_base = FastWebSocketProtocol if fast else GuardedWebSocketProtocol
    ws = type(ws_base.__name__, (ws_base,), {"guards": guards})
    return http, ws


def install_accept_error_warning(loop: asyncio.AbstractEventLoop, guards: Guards) -> None:
    """Log a (rate-limited) warning when accepting a connection fails for want of a
    resource (``EMFILE``: the file-descriptor limit), instead of asyncio's traceback
    per attempt or uvloop's silence; other errors go to the previous handler."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
            guards.warn(
                "accept",
                "cannot accept connections: %s (raise the file-descriptor limit, ulimit -n, "
                "or lower WS_MAX_CONNECTIONS; see docs/operations.md)",
                exc.strerror,
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


# -- HTTP ----------------------------------------------------------------------


class _HeadGuard:
    """Mixed in before uvicorn's HTTP protocol (httptools or h11): the head deadline.

    Parser-independent: a head is in progress from the first byte after the
    previous response (or from the connection, for the first one) until the
    protocol has a new request cycle, or has handed the socket to the WebSocket
    protocol.
    """

    guards: Guards
    # uvicorn's attributes this relies on:
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any
    connections: set[Any]

    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        _check_fd_headroom(len(self.connections), self.guards)
        if self.guards.send_buffer:
            _bound_send_buffer(transport, self.guards.send_buffer)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            return  # refused: read and drop what the client still sends (see _refuse)
        cycle = self.cycle
        if self._head_timer is None and (cycle is None or cycle.response_complete):
            self._arm_head_timer()  # the next request on a kept-alive connection
        if self._head_timer is not None:
            self._head_bytes += len(data)
            if self._head_bytes > self.guards.max_head_bytes:
                self._refuse(b"431 Request Header Fields Too Large", "head")
                return
        super().data_received(data)  # type: ignore[misc]
        if self._head_timer is not None and (self.cycle is not cycle or not self._still_http()):
            self._cancel_head_timer()  # a new request started, or a WebSocket took over

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_head_timer(self) -> None:
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.guards.header_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._still_http():
            self._refuse(b"408 Request Timeout", "timeout")

    def _still_http(self) -> bool:
        """False once the socket was handed to the WebSocket protocol (an upgrade)."""
        return self.transport.get_protocol() is cast(asyncio.BaseProtocol, self)

    def _refuse(self, status: bytes, kind: str) -> None:
        self._cancel_head_timer()
        transport = self.transport
        if transport.is_closing():
            return
        if self._head_bytes:  # a client that sent nothing gets nothing
            transport.write(
                b"HTTP/1.1 " + status + b"\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
            )
            # A lingering close, as nginx does: closing a socket with unread input
            # makes the kernel send RST, and a client still writing its head would
            # lose our answer with it. So send FIN after the answer, drop what still
            # arrives, and close when the client does or after LINGER seconds.
            if transport.can_write_eof():
                transport.write_eof()
                self._linger = self.loop.call_later(LINGER, transport.close)
            else:
                transport.close()
        else:
            transport.close()
        if kind == "timeout":
            self.guards.warn(
                "head-timeout",
                "closed a connection that sent no complete request head within %gs "
                "(HTTP_HEADER_TIMEOUT)",
                self.guards.header_timeout,
            )
        else:
            self.guards.warn(
                "head-size",
                "closed a connection whose request head exceeded %d bytes",
                self.guards.max_head_bytes,
            )


def _check_fd_headroom(connections: int, guards: Guards) -> None:
    """Warn (rate-limited) once open connections reach 90% of the file-descriptor limit.

    Past the limit uvloop (libuv) accepts and at once closes new connections, and
    reports nothing: this line is the only sign an operator gets. (``getrlimit`` is
    read each time, ~1 µs: the limit can change under a running process.)
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and connections >= soft * 0.9:
        guards.warn(
            "fd-limit",
            "%d connections open, close to the file-descriptor limit (%d): new ones will "
            "fail (raise ulimit -n, lower WS_MAX_CONNECTIONS, add api processes)",
            connections,
            soft,
        )


def _bound_send_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # not a TCP socket: nothing to bound
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


# -- WebSocket -----------------------------------------------------------------


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol with the guards of the module docstring."""

    guards: Guards

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets logs every header and frame (elided in the middle, so a mask can
        # miss) at DEBUG when its logger is at DEBUG: keys included. Never: this class
        # logs the handshake with unknown headers masked, and client messages once the
        # app has called AUTHENTICATED, withholding any that mention "auth".
        self._debug = self.conn.debug
        self.conn.debug = False
        self._log_messages = False
        self._handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._handshake_timer = self.loop.call_later(
            self.guards.header_timeout, self._handshake_timeout
        )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # websockets refused the request (e.g. a header line over 8 KiB: 431) and
            # queued its answer, which uvicorn 0.54 neither sends nor follows with a close.
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.transport.close()
            self.guards.warn(
                "handshake-refused",
                "refused a WebSocket handshake from %s: %s",
                _peer(self.client),
                self.conn.handshake_exc,
            )

    def handle_connect(self, event: Any) -> None:
        if self._debug:
            headers = ", ".join(
                f"{name}: {value if name.lower() in _SHOWN_HEADERS else '***'}"
                for name, value in event.headers.raw_items()
            )
            log.debug(
                "%s - WebSocket handshake %s [%s]",
                _peer(self.client),
                redact(event.path),
                headers,
            )
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][AUTHENTICATED] = self._authenticated

    def _authenticated(self) -> None:
        self._log_messages = self._debug

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete:
            self._cancel_handshake_timer()

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text":
            try:
                text = b"".join(self.frames).decode()
            except UnicodeDecodeError:
                # uvicorn logs this with logger.exception: any client could fill the
                # error log with tracebacks. Same close (1007), one throttled line.
                self.frames = []
                self.guards.warn(
                    "bad-utf8", "closed %s with 1007: invalid UTF-8", _peer(self.client)
                )
                self.conn.send_close(1007, "invalid UTF-8")
                self.handle_parser_exception()
                return
            if self._log_messages:
                shown = "(mentions auth: not shown)" if "auth" in text.lower() else text[:200]
                log.debug("%s < text (%d chars) %s", _peer(self.client), len(text), shown)
        elif self._log_messages:
            log.debug("%s < binary (%d bytes)", _peer(self.client), sum(map(len, self.frames)))
        super().send_receive_event_to_app()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_handshake_timer()
        super().connection_lost(exc)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _handshake_timeout(self) -> None:
        self._handshake_timer = None
        if self.handshake_complete or self.transport.is_closing():
            return
        self.send_500_response()
        self.close_sent = True
        self.transport.close()
        self.guards.warn(
            "handshake-timeout",
            "closed a WebSocket from %s whose handshake was not complete within %gs "
            "(HTTP_HEADER_TIMEOUT)",
            _peer(self.client),
            self.guards.header_timeout,
        )


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"


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


class FastWebSocketProtocol(GuardedWebSocketProtocol):
    """The guarded protocol, exposing a :class:`FastChannel` to the app, with lighter
    per-connection state (see :class:`_Mailbox` and :class:`_Flag`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # duck types for uvicorn's asyncio.Queue/Event (the methods it calls)
        self.queue = _Mailbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.fast_channel = FastChannel(self.queue.put_nowait, self._compressed)

    def _compressed(self) -> bool:
        return bool(self.conn.extensions)

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
