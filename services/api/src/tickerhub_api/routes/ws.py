"""``/ws/prices`` and ``/ws/news``: adapt ASGI WebSockets to the stream machinery.

Admission (:func:`_admit`), before any data: the Origin allowlist (refused before
accept: HTTP 403), then, when API keys are on, a key from the URL, the headers or
a first ``{"auth": "<key>"}`` message (else closed with 1008), then the
per-process connection ceiling (accepted, then closed with 1013).

Then the connection is registered with its stream and this handler reads client
frames (each one through the rate limiter) until the client leaves or the
connection is closed. How frames are sent depends on the transport:

* fast path (uvicorn's scope carries a ``FastChannel``): this task only reads;
  the hub's flusher writes. A close by the server (slow client, shutdown)
  interrupts the pending ``receive`` (``FastChannel.interrupt``); this task
  then sends the close frame.
* ASGI path: a second task runs the connection's ``AsgiSender``; whichever of
  the two ends first ends the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from fastapi import APIRouter, WebSocket
from starlette.types import Message
from starlette.websockets import WebSocketState

from tickerhub_api.access import API_KEY_QUERY, KeyCheck, OriginCheck, key_from_headers, key_id
from tickerhub_api.limits import ConnectionSlots, Verdict, WarningThrottle
from tickerhub_api.settings import ApiSettings
from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.fastpath import AUTHENTICATED, EXTENSION, FastChannel
from tickerhub_api.stream.hub import Hub
from tickerhub_api.stream.policy import ConnectionPolicy
from tickerhub_api.stream.protocol import (
    BINARY_NOT_SUPPORTED,
    RATE_LIMITED,
    CloseCode,
)
from tickerhub_api.stream.streams import Stream

log = logging.getLogger(__name__)

router = APIRouter()

# How long to try to deliver a close frame to a client that may not be reading.
CLOSE_GRACE_SECONDS = 1.0


@dataclass
class Admission:
    """Who may connect; one per app (``app.state.ws_admission``).

    What a connection may then do is its
    :class:`~tickerhub_api.stream.policy.ConnectionPolicy` (``app.state.ws_policy``).
    """

    keys: KeyCheck
    origins: OriginCheck
    slots: ConnectionSlots  # authenticated connections (WS_MAX_CONNECTIONS)
    pending: ConnectionSlots  # accepted, waiting for {"auth": ...} (WS_MAX_PENDING_AUTH)
    warnings: WarningThrottle = field(default_factory=WarningThrottle)

    def warn_full(self, setting: str, limit: int) -> None:
        """One warning a minute per limit, however many connections it turns away."""
        count = self.warnings.hit(setting)
        if count is not None:
            log.warning(
                "refused %d WebSocket(s) since the last such line: %s (%d) reached",
                count,
                setting,
                limit,
            )

    # WebSockets refused before reaching a stream, by reason (origin, capacity, auth).
    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Admission:
        return cls(
            keys=KeyCheck(settings.api_key_list),
            origins=OriginCheck(settings.allowed_origin_list),
            slots=ConnectionSlots(settings.ws_max_connections),
            pending=ConnectionSlots(settings.ws_max_pending_auth),
        )


@router.websocket("/ws/prices")
async def prices_ws(websocket: WebSocket) -> None:
    await _stream(websocket, websocket.app.state.hub.prices)


@router.websocket("/ws/news")
async def news_ws(websocket: WebSocket) -> None:
    await _stream(websocket, websocket.app.state.hub.news)


async def _stream(websocket: WebSocket, stream: Stream) -> None:
    """Admit, register with ``stream`` (which queues the first snapshot), serve, clean up."""
    state = websocket.app.state
    admission: Admission = state.ws_admission
    policy: ConnectionPolicy = state.ws_policy
    if not await _admit(websocket, admission, policy.auth_timeout):
        return
    try:
        hub: Hub = state.hub
        if (channel := _fast_channel(websocket)) is not None:
            await _serve_fast(websocket, hub, channel, stream, policy)
        else:
            await _serve_asgi(websocket, hub, stream, policy)
    finally:
        admission.slots.release()


# The streams by path, for the app's direct dispatch (app.TickerHubApp).
STREAMS = {"/ws/prices": prices_ws, "/ws/news": news_ws}


# -- admission -----------------------------------------------------------------


async def _admit(websocket: WebSocket, policy: Admission, auth_timeout: float) -> bool:
    """``True``: accepted, authenticated and holding a slot (the caller releases it).
    ``False``: refused, and the socket is closed (or was never accepted).

    Only authenticated connections hold one of ``WS_MAX_CONNECTIONS``' slots: one
    still owing its ``{"auth": ...}`` message holds one of ``WS_MAX_PENDING_AUTH``'s
    instead, so clients without a key, reconnecting on each ``1008``, cannot lock
    out a client that has one.
    """
    origin = websocket.headers.get("origin")
    if not policy.origins.allows(origin):
        log.info(
            "refused a WebSocket from %s: origin %.100r not allowed",
            _peer(websocket),
            origin,
            extra={"peer": _peer(websocket), "status": 403},
        )
        policy.refuse("origin")
        await websocket.close(CloseCode.POLICY, "origin not allowed")  # before accept: HTTP 403
        return False
    if policy.keys.enabled and not await _authenticate(websocket, policy, auth_timeout):
        return False
    if not policy.slots.acquire():
        policy.warn_full("WS_MAX_CONNECTIONS", policy.slots.limit)
        policy.refuse("capacity")
        await _accept(websocket)
        await _close(websocket, CloseCode.TRY_AGAIN, "too many connections: try again later")
        return False
    try:
        await _accept(websocket)
    except BaseException:
        policy.slots.release()
        raise
    _mark_authenticated(websocket)
    return True


async def _accept(websocket: WebSocket) -> None:
    """Accept once (an authenticating connection was accepted to read its message)."""
    if websocket.client_state is WebSocketState.CONNECTING:
        await websocket.accept()


def _mark_authenticated(websocket: WebSocket) -> None:
    """Tell the protocol (``uvicorn_protocols``) that frames may be logged from now on."""
    mark = websocket.scope.get("extensions", {}).get(AUTHENTICATED)
    if callable(mark):
        mark()


async def _authenticate(websocket: WebSocket, policy: Admission, auth_timeout: float) -> bool:
    """A key from ``?api_key=``, the headers, or a first ``{"auth": "<key>"}`` message."""
    keys = policy.keys
    key = websocket.query_params.get(API_KEY_QUERY) or key_from_headers(websocket.headers)
    if key is None:
        pending = policy.pending
        if not pending.acquire():
            policy.warn_full("WS_MAX_PENDING_AUTH", pending.limit)
            policy.refuse("capacity")
            await _accept(websocket)
            await _close(websocket, CloseCode.TRY_AGAIN, "too many connections: try again later")
            return False
        try:
            await _accept(websocket)
            async with asyncio.timeout(auth_timeout):
                message = await websocket.receive()
        except TimeoutError:
            return await _refuse(websocket, policy, "authentication timeout")
        finally:
            pending.release()
        if message["type"] == "websocket.disconnect":
            return False
        key = _auth_key(message.get("text"))
        if key is None:
            return await _refuse(
                websocket, policy, 'authentication required: send {"auth": "<key>"}'
            )
    if not keys.valid(key):
        return await _refuse(websocket, policy, "invalid API key")
    log.debug("WebSocket from %s authenticated with key %s", _peer(websocket), key_id(key))
    return True


async def _refuse(websocket: WebSocket, policy: Admission, reason: str) -> bool:
    log.info(
        "refused a WebSocket from %s: %s",
        _peer(websocket),
        reason,
        extra={"peer": _peer(websocket), "code": int(CloseCode.POLICY)},
    )
    policy.refuse("auth")
    await _accept(websocket)  # a close before the accept would be an HTTP 403
    await _close(websocket, CloseCode.POLICY, reason)
    return False


def _auth_key(text: str | None) -> str | None:
    """The key of an ``{"auth": "<key>"}`` message, else ``None``."""
    if text is None or '"auth"' not in text:
        return None
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(obj.get("auth"), str):
        return obj["auth"]
    return None


def _peer(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client else "?"


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_GRACE_SECONDS):
            await websocket.close(code, reason)


# -- serving -------------------------------------------------------------------


async def _serve_fast(
    websocket: WebSocket, hub: Hub, channel: FastChannel, stream: Stream, policy: ConnectionPolicy
) -> None:
    """Fast path: this task only reads; the hub's flusher writes. A close by the server
    interrupts the pending ``receive`` (``FastChannel.interrupt``), and ``_read`` returns."""
    conn = hub.fast_connection(channel)
    conn.bars = _wants_bars(websocket)
    try:
        await stream.attach(conn, stream.opening(websocket.query_params))
        await _read(websocket, conn, stream, policy)
        # Still registered until the close frame is sent: the hub's close_all waits for that.
        await _send_close(websocket, conn)
    finally:
        stream.detach(conn)


async def _serve_asgi(
    websocket: WebSocket, hub: Hub, stream: Stream, policy: ConnectionPolicy
) -> None:
    """ASGI path: a sender task beside this reader; whichever ends first ends the other."""
    conn, sender = hub.asgi_connection(_text_sender(websocket))
    conn.bars = _wants_bars(websocket)
    try:
        # News loads its recent items from Redis.
        await stream.attach(conn, stream.opening(websocket.query_params))
        sending = asyncio.create_task(sender.run())
        reading = asyncio.create_task(_read(websocket, conn, stream, policy))
        try:
            await asyncio.wait((sending, reading), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sending, reading):
                task.cancel()
            for task in (sending, reading):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await _send_close(websocket, conn)
    finally:
        stream.detach(conn)


async def _send_close(websocket: WebSocket, conn: Connection) -> None:
    code = conn.close_code
    if code is not None:
        await _close(websocket, code, code.reason)


def _wants_bars(websocket: WebSocket) -> bool:
    """``?bars=1`` (or ``true``): the same as a first ``{"bars": true}`` message."""
    return websocket.query_params.get("bars", "").lower() in {"1", "true", "yes"}


def _fast_channel(websocket: WebSocket) -> FastChannel | None:
    channel = websocket.scope.get("extensions", {}).get(EXTENSION)
    return channel if isinstance(channel, FastChannel) and channel.usable else None


async def _read(
    websocket: WebSocket, conn: Connection, stream: Stream, policy: ConnectionPolicy
) -> None:
    limiter = policy.limiter()
    idle_timeout = policy.idle_timeout
    while True:
        message: Message
        if idle_timeout:
            try:
                async with asyncio.timeout(idle_timeout):
                    message = await websocket.receive()
            except TimeoutError:
                conn.close(CloseCode.IDLE)
                return
        else:
            message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            conn.peer_close_code = message.get("code", 1005)
            return
        if conn.close_code is not None:
            return
        stream.received += 1
        if limiter is not None:
            verdict = limiter.check()
            if verdict is Verdict.ABUSE:
                log.info("closing %r: kept sending over the message rate limit", conn)
                conn.close(CloseCode.POLICY)
                return
            if verdict is Verdict.REJECT:
                stream.error(
                    conn,
                    RATE_LIMITED,
                    f"over {limiter.rate:g} messages per second: this one was not "
                    "processed; keep sending too fast and the connection is closed",
                )
                if conn.close_code is not None:
                    return
                continue
        text = message.get("text")
        if text is not None:
            if _auth_key(text) is not None:
                continue  # authenticated already (or the api is open): nothing to do
            await stream.handle_text(conn, text)
        else:
            stream.error(conn, BINARY_NOT_SUPPORTED, "send text frames: 'ping' or a JSON object")
        if conn.close_code is not None:
            return


def _text_sender(websocket: WebSocket) -> Callable[[str], Awaitable[None]]:
    async def send_text(frame: str) -> None:
        await websocket.send({"type": "websocket.send", "text": frame})

    return send_text
