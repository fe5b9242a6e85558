"""Reading a TickerHub WebSocket in tests: JSON messages, and the bare ``pong``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from tickerhub_testkit.wait import WAIT


def decode(frame: str | bytes) -> Any:
    """A frame as the protocol defines it: ``"pong"`` as is, everything else JSON."""
    return frame if frame == "pong" else orjson.loads(frame)


async def recv(ws: Any, limit: float = WAIT) -> Any:
    """The next message (``ws``: any client with an async ``recv()``)."""
    return decode(await asyncio.wait_for(ws.recv(), limit))


async def recv_until(ws: Any, predicate: Callable[[Any], bool], limit: float = WAIT) -> Any:
    """The first message for which ``predicate`` holds; the ones before it are dropped."""
    async with asyncio.timeout(limit):
        while True:
            message = decode(await ws.recv())
            if predicate(message):
                return message
