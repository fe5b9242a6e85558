"""``/ws/prices`` and ``/ws/news``: accept, register, read client messages, send via the outbox.

Per connection there are two tasks: this handler reading client frames, and
the connection's sender (``Connection.run_sender``). Whichever ends first ends
the other: a client that leaves stops the sender, a sender closed for
slowness closes the socket with 4008.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, WebSocket
from starlette.types import Message

from tickerhub_api.connection import Connection
from tickerhub_api.hub import Hub
from tickerhub_api.prices import error_frame
from tickerhub_api.protocol import BINARY_NOT_SUPPORTED

router = APIRouter()

# How long to try to deliver a close frame to a client that may not be reading.
CLOSE_GRACE_SECONDS = 1.0

TextHandler = Callable[[Connection, str], Awaitable[None] | None]


@router.websocket("/ws/prices")
async def prices_ws(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    await websocket.accept()
    conn = hub.new_connection()
    hub.prices.attach(conn)
    try:
        await _serve(websocket, conn, hub.prices.handle_text)
    finally:
        hub.prices.detach(conn)


@router.websocket("/ws/news")
async def news_ws(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    await websocket.accept()
    conn = hub.new_connection()
    try:
        await hub.news.attach(conn)  # queues the snapshot; _serve's sender sends it
        await _serve(websocket, conn, hub.news.handle_text)
    finally:
        hub.news.detach(conn)


async def _serve(websocket: WebSocket, conn: Connection, on_text: TextHandler) -> None:
    sender = asyncio.create_task(conn.run_sender(_text_sender(websocket)))
    reader = asyncio.create_task(_read(websocket, conn, on_text))
    try:
        await asyncio.wait((sender, reader), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, reader):
            task.cancel()
        for task in (sender, reader):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if conn.close_code is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                await websocket.close(conn.close_code, "slow client: not reading")


async def _read(websocket: WebSocket, conn: Connection, on_text: TextHandler) -> None:
    while True:
        message: Message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            result = on_text(conn, text)
            if result is not None:
                await result
        else:
            conn.send_frame(
                error_frame(BINARY_NOT_SUPPORTED, "send text frames: 'ping' or a JSON object")
            )
        if conn.close_code is not None:
            return


def _text_sender(websocket: WebSocket) -> Callable[[str], Awaitable[None]]:
    async def send_text(frame: str) -> None:
        await websocket.send({"type": "websocket.send", "text": frame})

    return send_text
