"""Floods on the open endpoints, against the api as a subprocess over a real redis-server.

Issue 14 (2, 5): 150 concurrent ``/news`` requests made ``/readyz`` say Redis was
down and half the answers "Redis is unreachable (Too many connections)"; 400
``/ws/news`` connects left 301 without a snapshot. Bounded in count; the time
limits only keep a broken build from hanging.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from typing import Any, cast

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from tickerhub_core.keys import RedisKeys
from tickerhub_core.models import NewsItem
from tickerhub_core.store import NewsStore
from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.ws import recv_until

pytestmark = pytest.mark.integration

FLOOD = 160


async def seed(url: str, news: int = 100) -> None:
    redis = Redis.from_url(url)
    try:
        await Producer(redis).publish({s: {"price": 10.0} for s in ("AAPL", "MSFT")})
        items = [
            {
                "id": f"n{i}",
                "title": f"story {i}",
                "publisher": "Wire",
                "link": None,
                "published_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
                "tickers": ["AAPL"] if i % 2 else ["MSFT"],
            }
            for i in range(news)
        ]
        await NewsStore(redis, RedisKeys()).add(cast("list[NewsItem]", items), max_items=500)
    finally:
        await redis.aclose()


async def flood_news(http: str) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """``FLOOD`` concurrent ``/news`` requests, with ``/readyz`` probed throughout."""
    limits = httpx.Limits(max_connections=FLOOD + 10)
    async with httpx.AsyncClient(base_url=http, timeout=60, limits=limits) as client:
        done = asyncio.Event()
        probes: list[httpx.Response] = []

        async def probe() -> None:
            while not done.is_set():
                probes.append(await client.get("/readyz"))
                await asyncio.sleep(0.05)

        prober = asyncio.create_task(probe())
        answers = await asyncio.gather(
            *(client.get("/news", params={"limit": 200}) for _ in range(FLOOD))
        )
        done.set()
        await prober
        return list(answers), probes


def overload_lines(log: str) -> int:
    return log.count("REST overloaded: Redis connection pool exhausted:")


async def test_a_news_flood_waits_for_connections_and_readyz_stays_ready(
    redis_server: Any, procs: Procs
) -> None:
    await seed(redis_server.url)
    # A small pool, so 200 requests must share 4 connections: they wait their turn.
    api = start_api(procs, redis_server.url, REDIS_MAX_CONNECTIONS="4")
    answers, probes = await flood_news(api.http)

    assert probes, "readyz was never probed"
    assert {p.status_code for p in probes} == {200}, [
        p.text for p in probes if p.status_code != 200
    ]
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {200, 503}, statuses
    for answer in answers:
        assert "unreachable" not in answer.text
        if answer.status_code == 503:  # only if the loaded machine made one wait 2 s
            assert answer.headers["Retry-After"] == "1"
    assert statuses[200] > 0
    assert len(answers[0].json()) == 100


async def test_overload_is_answered_as_overload_and_logged_once(
    redis_server: Any, procs: Procs
) -> None:
    await seed(redis_server.url)
    # Two pooled connections (one is the pub/sub reader's) and almost no wait: most of
    # the flood finds the pool busy.
    api = start_api(procs, redis_server.url, REDIS_MAX_CONNECTIONS="2", REDIS_POOL_TIMEOUT="0.001")
    answers, probes = await flood_news(api.http)

    assert {p.status_code for p in probes} == {200}, [
        p.text for p in probes if p.status_code != 200
    ]
    overloaded = [a for a in answers if a.status_code == 503]
    assert overloaded, "no request found the pool busy: the test did not test overload"
    for answer in overloaded:
        assert answer.headers["Retry-After"] == "1"
        assert answer.json() == {
            "detail": "news is unavailable: the api is overloaded, try again shortly"
        }
    assert {a.status_code for a in answers} <= {200, 503}
    assert overload_lines(api.output()) == 1, api.output()[-3000:]
    assert "unreachable" not in api.output()


async def test_a_readyz_flood_stays_ready_and_costs_redis_little(
    redis_server: Any, procs: Procs
) -> None:
    await seed(redis_server.url)
    api = start_api(procs, redis_server.url, REDIS_MAX_CONNECTIONS="2")
    redis = Redis.from_url(redis_server.url)
    try:
        before = int((await redis.info("stats"))["total_commands_processed"])
        limits = httpx.Limits(max_connections=FLOOD)
        async with httpx.AsyncClient(base_url=api.http, timeout=60, limits=limits) as client:
            answers = await asyncio.gather(*(client.get("/readyz") for _ in range(FLOOD)))
            news = await client.get("/news")
        after = int((await redis.info("stats"))["total_commands_processed"])
    finally:
        await redis.aclose()
    assert {a.status_code for a in answers} == {200}
    assert news.status_code == 200
    # One cached check serves the whole flood (a few if it outlasts a second), never one each.
    assert after - before < FLOOD // 4, after - before


BURST = 300


async def test_a_news_connect_burst_gets_every_snapshot_once_redis_can_answer(
    redis_server: Any, procs: Procs
) -> None:
    await seed(redis_server.url)
    # A pool that is nearly always busy during the burst: many first loads fail and
    # must be retried; every client still gets its snapshot without asking again.
    api = start_api(procs, redis_server.url, REDIS_MAX_CONNECTIONS="2", REDIS_POOL_TIMEOUT="0.001")
    unavailable = 0

    async def client() -> dict[str, Any]:
        nonlocal unavailable
        async with websockets.connect(f"{api.ws}/ws/news", open_timeout=60) as ws:

            def is_snapshot(message: Any) -> bool:
                nonlocal unavailable
                if message.get("type") == "error":
                    assert message["code"] == "unavailable", message
                    unavailable += 1
                return message.get("type") == "snapshot"

            return await recv_until(ws, is_snapshot, limit=60)

    snapshots = await asyncio.gather(*(client() for _ in range(BURST)))

    assert len(snapshots) == BURST
    assert all(len(s["data"]) == 20 for s in snapshots)  # NEWS_DEFAULT_LIMIT
    assert unavailable > 0, "no first load failed: the burst did not exercise the retry"


async def test_rest_max_concurrent_refuses_past_the_cap_and_spares_the_probes(
    own_redis_server: Any, procs: Procs
) -> None:
    await seed(own_redis_server.url)
    api = start_api(procs, own_redis_server.url, REST_MAX_CONCURRENT="3")
    async with httpx.AsyncClient(base_url=api.http, timeout=60) as client:
        assert (await client.get("/tickers")).status_code == 200
        os.kill(own_redis_server.pid, signal.SIGSTOP)  # Redis hangs: /news requests stay open
        try:
            hanging = [asyncio.create_task(client.get("/news")) for _ in range(3)]

            async def refused() -> bool:
                return (await client.get("/tickers")).status_code == 503

            await eventually(refused, "a request past REST_MAX_CONCURRENT refused")
            answer = await client.get("/tickers")
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "1"
            assert answer.json() == {"detail": "the api is overloaded, try again shortly"}
            assert (await client.get("/healthz")).status_code == 200  # probes are exempt
            assert (await client.get("/readyz")).status_code in (200, 503)
        finally:
            os.kill(own_redis_server.pid, signal.SIGCONT)
        assert [r.status_code for r in await asyncio.gather(*hanging)] == [200] * 3
        assert (await client.get("/tickers")).status_code == 200
    assert api.output().count("REST_MAX_CONCURRENT (3) reached") == 1
