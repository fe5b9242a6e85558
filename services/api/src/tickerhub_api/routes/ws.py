"""``/ws/prices`` and ``/ws/news``: admit, accept, register, read client messages, send via
the outbox.

Admission (:func:`_admit`), before any data: the Origin allowlist (refused before
accept: HTTP 403), the per-process connection ceiling (accepted, then closed
with 1013), then, when API keys are on, a key from the URL, the headers or a
first ``{"auth": "<key>"}`` message (else closed with 1008).

Per connection there are then two tasks: this handler reading client frames
(each one through the rate limiter), and the connection's sender
(``Connection.run_sender``). Whichever ends first ends the other: a client that
leaves stops the sender, a sender closed for slowness closes the socket with 4008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from fastapi import APIRouter, WebSocket
from starlette.types import Message

from tickerhub_api.access import API_KEY_QUERY, KeyCheck, OriginCheck, key_from_headers, key_id
from tickerhub_api.connection import CLOSE_GOING_AWAY, CLOSE_SLOW_CLIENT, Connection
from tickerhub_api.fastpath import EXTENSION, FastChannel
from tickerhub_api.hub import Hub
from tickerhub_api.limits import ConnectionSlots, MessageLimiter, Verdict
from tickerhub_api.news import NewsStream
from tickerhub_api.prices import PriceStream, error_frame
from tickerhub_api.protocol import (
    BINARY_NOT_SUPPORTED,
    CLOSE_IDLE,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    RATE_LIMITED,
)
from tickerhub_api.settings import ApiSettings

log = logging.getLogger(__name__)

router = APIRouter()

# How long to try to deliver a close frame to a client that may not be reading.
CLOSE_GRACE_SECONDS = 1.0

TextHandler = Callable[[Connection, str], Awaitable[None] | None]

CLOSE_REASONS = {
    CLOSE_GOING_AWAY: "server shutting down: reconnect",
    CLOSE_SLOW_CLIENT: "slow client: not reading",
    CLOSE_POLICY: "too many messages",
    CLOSE_IDLE: "idle timeout",
}


@dataclass
class WsPolicy:
    """Who may connect and how much they may say; one per app (``app.state.ws_policy``)."""

    keys: KeyCheck
    origins: OriginCheck
    slots: ConnectionSlots
    auth_timeout: float
    idle_timeout: float  # 0: none
    rate: float  # messages per second; 0: no limit
    burst: int
    strikes: int

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> WsPolicy:
        return cls(
            keys=KeyCheck(settings.api_key_list),
            origins=OriginCheck(settings.allowed_origin_list),
            slots=ConnectionSlots(settings.ws_max_connections),
            auth_timeout=settings.ws_auth_timeout,
            idle_timeout=settings.ws_idle_timeout,
            rate=settings.ws_max_messages_per_second,
            burst=settings.ws_message_burst,
            strikes=settings.ws_rate_limit_strikes,
        )

    def limiter(self) -> MessageLimiter | None:
        return MessageLimiter(self.rate, self.burst, self.strikes) if self.rate > 0 else None


@router.websocket("/ws/prices")
async def prices_ws(websocket: WebSocket) -> None:
    await _stream(websocket, websocket.app.state.hub.prices)


@router.websocket("/ws/news")
async def news_ws(websocket: WebSocket) -> None:
    await _stream(websocket, websocket.app.state.hub.news)


async def _stream(websocket: WebSocket, stream: PriceStream | NewsStream) -> None:
    """Admit, register with ``stream`` (which queues the first snapshot), serve, clean up."""
    policy: WsPolicy = websocket.app.state.ws_policy
    if not await _admit(websocket, policy):
        return
    try:
        hub: Hub = websocket.app.state.hub
        conn = hub.new_connection()
        if (channel := _fast_channel(websocket)) is not None:
            conn.use_channel(channel, _current_task())
        try:
            attached = stream.attach(conn)
            if attached is not None:
                await attached  # news loads its recent items from Redis
            await _serve(websocket, conn, stream.handle_text, policy)
        finally:
            stream.detach(conn)
    finally:
        policy.slots.release()


# The streams by path, for the app's direct dispatch (app.TickerHubApp).
STREAMS = {"/ws/prices": prices_ws, "/ws/news": news_ws}


# -- admission -----------------------------------------------------------------


async def _admit(websocket: WebSocket, policy: WsPolicy) -> bool:
    """``True``: accepted, authenticated and holding a slot (the caller releases it).
    ``False``: refused, and the socket is closed (or was never accepted)."""
    origin = websocket.headers.get("origin")
    if not policy.origins.allows(origin):
        log.info("refused a WebSocket from %s: origin %.100r not allowed", _peer(websocket), origin)
        await websocket.close(CLOSE_POLICY, "origin not allowed")  # before accept: HTTP 403
        return False
    if not policy.slots.acquire():
        log.warning("refused a WebSocket: WS_MAX_CONNECTIONS (%d) reached", policy.slots.limit)
        await websocket.accept()
        await _close(websocket, CLOSE_TRY_AGAIN, "too many connections: try again later")
        return False
    try:
        await websocket.accept()
        if not policy.keys.enabled or await _authenticate(websocket, policy):
            return True
    except BaseException:
        policy.slots.release()
        raise
    policy.slots.release()
    return False


async def _authenticate(websocket: WebSocket, policy: WsPolicy) -> bool:
    """A key from ``?api_key=``, the headers, or a first ``{"auth": "<key>"}`` message."""
    key = websocket.query_params.get(API_KEY_QUERY) or key_from_headers(websocket.headers)
    if key is None:
        try:
            async with asyncio.timeout(policy.auth_timeout):
                message = await websocket.receive()
        except TimeoutError:
            return await _refuse(websocket, "authentication timeout")
        if message["type"] == "websocket.disconnect":
            return False
        key = _auth_key(message.get("text"))
        if key is None:
            return await _refuse(websocket, 'authentication required: send {"auth": "<key>"}')
    if not policy.keys.valid(key):
        return await _refuse(websocket, "invalid API key")
    log.debug("WebSocket from %s authenticated with key %s", _peer(websocket), key_id(key))
    return True


async def _refuse(websocket: WebSocket, reason: str) -> bool:
    log.info("refused a WebSocket from %s: %s", _peer(websocket), reason)
    await _close(websocket, CLOSE_POLICY, reason)
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


async def _serve(
    websocket: WebSocket, conn: Connection, on_text: TextHandler, policy: WsPolicy
) -> None:
    if conn.channel is not None:
        await _serve_fast(websocket, conn, on_text, policy)
        return
    sender = asyncio.create_task(conn.run_sender(_text_sender(websocket)))
    reader = asyncio.create_task(
        _read(websocket, conn, on_text, policy.limiter(), policy.idle_timeout)
    )
    try:
        await asyncio.wait((sender, reader), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, reader):
            task.cancel()
        for task in (sender, reader):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if conn.close_code is not None:
        await _close(websocket, conn.close_code, CLOSE_REASONS.get(conn.close_code, ""))


async def _serve_fast(
    websocket: WebSocket, conn: Connection, on_text: TextHandler, policy: WsPolicy
) -> None:
    """Fast path: this task only reads; the hub's Flusher writes. ``conn.close`` cancels us."""
    try:
        await _read(websocket, conn, on_text, policy.limiter(), policy.idle_timeout)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if conn.close_code is None or task is None or task.cancelling() > 1:
            raise
        task.uncancel()
    if conn.close_code is not None:
        await _close(websocket, conn.close_code, CLOSE_REASONS.get(conn.close_code, ""))


def _fast_channel(websocket: WebSocket) -> FastChannel | None:
    channel = websocket.scope.get("extensions", {}).get(EXTENSION)
    return channel if isinstance(channel, FastChannel) and channel.usable else None


async def _read(
    websocket: WebSocket,
    conn: Connection,
    on_text: TextHandler,
    limiter: MessageLimiter | None,
    idle_timeout: float,
) -> None:
    while True:
        message: Message
        if idle_timeout:
            try:
                async with asyncio.timeout(idle_timeout):
                    message = await websocket.receive()
            except TimeoutError:
                conn.close(CLOSE_IDLE)
                return
        else:
            message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if limiter is not None:
            verdict = limiter.check()
            if verdict is Verdict.ABUSE:
                log.info("closing %r: kept sending over the message rate limit", conn)
                conn.close(CLOSE_POLICY)
                return
            if verdict is Verdict.REJECT:
                conn.send_frame(
                    error_frame(
                        RATE_LIMITED,
                        f"over {limiter.rate:g} messages per second: this one was not "
                        "processed; keep sending too fast and the connection is closed",
                    )
                )
                if conn.close_code is not None:
                    return
                continue
        text = message.get("text")
        if text is not None:
            if _auth_key(text) is not None:
                continue  # authenticated already (or the api is open): nothing to do
            result = on_text(conn, text)
            if result is not None:
                await result
        else:
            conn.send_frame(
                error_frame(BINARY_NOT_SUPPORTED, "send text frames: 'ping' or a JSON object")
            )
        if conn.close_code is not None:
            return


def _current_task() -> asyncio.Task[None]:
    task = asyncio.current_task()
    assert task is not None
    return task


def _text_sender(websocket: WebSocket) -> Callable[[str], Awaitable[None]]:
    async def send_text(frame: str) -> None:
        await websocket.send({"type": "websocket.send", "text": frame})

    return send_text
