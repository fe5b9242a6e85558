"""REST while Redis hangs or comes back empty, against the api as a subprocess (issue 14, low).

A hung Redis (SIGSTOP) used to leave ``/tickers/AAPL`` answering 200 from a frozen
copy with nothing saying so; a Redis restarted empty made it answer a false
``404 unknown symbol`` until a producer wrote the snapshot back.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.wait import eventually

pytestmark = pytest.mark.integration


async def seed(url: str) -> None:
    redis = Redis.from_url(url)
    try:
        await Producer(redis).publish({"AAPL": {"price": 1.0}})
    finally:
        await redis.aclose()


async def age_of(client: httpx.AsyncClient) -> float:
    response = await client.get("/tickers/AAPL")
    assert response.status_code == 200
    return float(response.headers["X-TickerHub-Age"])


async def test_quotes_say_how_long_ago_redis_was_heard_from(
    own_redis_server: Any, procs: Procs
) -> None:
    await seed(own_redis_server.url)
    api = start_api(procs, own_redis_server.url)
    async with httpx.AsyncClient(base_url=api.http, timeout=30) as client:
        assert await age_of(client) < 30
        tickers = await client.get("/tickers")
        assert float(tickers.headers["X-TickerHub-Age"]) >= 0
        os.kill(own_redis_server.pid, signal.SIGSTOP)
        try:
            # The subscription pings every 5 s: a hung Redis never answers, the age grows.
            async def grown() -> bool:
                return await age_of(client) > 8

            await eventually(grown, "the age header to grow while Redis hangs", limit=40)
        finally:
            os.kill(own_redis_server.pid, signal.SIGCONT)

        async def fresh() -> bool:
            return await age_of(client) < 8

        await eventually(fresh, "the age header to drop once Redis answers", limit=40)


async def test_no_false_404_while_redis_is_back_empty(own_redis_server: Any, procs: Procs) -> None:
    await seed(own_redis_server.url)
    api = start_api(procs, own_redis_server.url)
    async with httpx.AsyncClient(base_url=api.http, timeout=30) as client:
        assert (await client.get("/tickers/AAPL")).status_code == 200
        own_redis_server.restart()  # empty: no persistence, and no producer to write back
        statuses = []
        for _ in range(40):  # the first seconds after the restart; well within the api's grace
            response = await client.get("/tickers/AAPL")
            statuses.append(response.status_code)
            if response.status_code == 200:
                assert response.json()["price"] == 1.0
        assert set(statuses) <= {200, 503}, statuses
        assert 200 in statuses
        assert "127.0.0.1" not in (await client.get("/tickers/AAPL")).text
