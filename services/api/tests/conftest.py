"""Helpers shared by the api tests: writing into Redis the documented way."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from redis.asyncio import Redis

from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_core.models import make_quote
from tickerhub_core.store import SnapshotStore
from tickerhub_testkit.processes import ApiProcess, ServiceProcess


def full_quote(symbol: str, seq: int, **fields: Any) -> dict[str, Any]:
    return {**make_quote(symbol, **fields), "seq": seq, "stale": False}


class Producer:
    """Publishes diffs through ``SnapshotStore.publish_diff``, as any producer must."""

    def __init__(self, redis: Redis, keys: RedisKeys | None = None) -> None:
        self.store = SnapshotStore(redis, keys or RedisKeys())
        self.quotes: dict[str, dict[str, Any]] = {}
        self.seq = 0

    async def publish(self, changes: dict[str, dict[str, Any]]) -> int:
        """``changes``: symbol -> changed fields (a new symbol gets a full quote)."""
        seq = self.seq + 1
        data: dict[str, dict[str, Any]] = {}
        for symbol, fields in changes.items():
            if symbol not in self.quotes:
                self.quotes[symbol] = full_quote(symbol, seq, **fields)
                data[symbol] = dict(self.quotes[symbol])
            else:
                self.quotes[symbol].update(fields, seq=seq)
                data[symbol] = {"symbol": symbol, "seq": seq, **fields}
        full = {s: wire.dumps(self.quotes[s]) for s in changes}
        result = await self.store.publish_diff(self.seq, wire.diff_message(seq, data), full)
        assert result.ok, result
        self.seq = seq
        return seq


# -- the api as a real subprocess ----------------------------------------------------

BIN = Path(sys.executable).parent
WAIT = 20.0  # generous: only to avoid hanging

Service = ServiceProcess


def start_api(redis_url: str, **env: str) -> ApiProcess:
    """The api as a subprocess on a free port, once it is ready."""
    return ApiProcess(redis_url, **{"LOG_LEVEL": "WARNING", **env}).start().wait_ready(WAIT)  # type: ignore[return-value]


async def recv(ws: Any) -> Any:
    frame = await asyncio.wait_for(ws.recv(), WAIT)
    return frame if frame == "pong" else orjson.loads(frame)


async def frames_until_closed(ws: Any) -> tuple[list[Any], Any]:
    """Everything received until the server closes; then the close frame it sent."""
    frames: list[Any] = []
    while True:
        try:
            frames.append(await recv(ws))
        except websockets.ConnectionClosed as closed:
            return frames, closed.rcvd


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Services a test started; stopped at its end whatever happens."""
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


@pytest.fixture
async def producer(redis_server: Any) -> AsyncIterator[Producer]:
    """A producer that has published AAPL and MSFT."""
    client = Redis.from_url(redis_server.url)
    producer = Producer(client)
    await producer.publish({s: {"price": 100.0} for s in ("AAPL", "MSFT")})
    yield producer
    await client.aclose()
