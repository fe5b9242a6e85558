"""Helpers shared by the api tests (the generic ones live in tickerhub_testkit)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from redis.asyncio import Redis

from tickerhub_testkit.producer import Producer
from tickerhub_testkit.ws import recv

__all__ = ["BIN", "Producer", "frames_until_closed"]

BIN = Path(sys.executable).parent


async def frames_until_closed(ws: Any) -> tuple[list[Any], Any]:
    """Everything received until the server closes; then the close frame it sent."""
    frames: list[Any] = []
    while True:
        try:
            frames.append(await recv(ws))
        except websockets.ConnectionClosed as closed:
            return frames, closed.rcvd


@pytest.fixture
async def aapl_msft(redis_server: Any) -> AsyncIterator[Producer]:
    """A producer that has published AAPL and MSFT."""
    client = Redis.from_url(redis_server.url)
    producer = Producer(client)
    await producer.publish({s: {"price": 100.0} for s in ("AAPL", "MSFT")})
    yield producer
    await client.aclose()


@pytest.fixture
async def redis(redis_server: Any) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def four_tickers(redis: Redis) -> Producer:
    """A producer that has published AAPL, MSFT, TSLA and GOOG."""
    producer = Producer(redis)
    await producer.publish({s: {"price": 100.0} for s in ("AAPL", "MSFT", "TSLA", "GOOG")})
    return producer


def quote(symbol: str, seq: int = 1, price: float = 1.0) -> Any:
    """A minimal stored quote (unit tests of the streams)."""
    return {"symbol": symbol, "seq": seq, "price": price}


def drain(conn: Any) -> list[Any]:
    """Everything queued for ``conn``, JSON frames decoded (``pong`` stays text)."""
    out: list[Any] = []
    while (frame := conn.outbox.take()) is not None:
        out.append(frame if not frame.startswith("{") else orjson.loads(frame))
    return out
