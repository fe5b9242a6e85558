"""Symbols on demand, end to end: a real poller (SOURCE=simulated), api(s) and redis-server.

The simulated source knows every valid symbol except SIM_UNKNOWN_SYMBOLS (ZZZZ by
default), so everything here runs offline. TICKERS is AAPL,MSFT: IBM, ORCL and the
rest are on demand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from tickerhub_testkit.metrics import scrape
from tickerhub_testkit.net import free_port
from tickerhub_testkit.processes import ApiProcess, Procs, ServiceProcess, poller_process, start_api
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.ws import recv, recv_until

pytestmark = pytest.mark.integration

TICKERS = ["AAPL", "MSFT"]
POLL_FREQ = "1.0"  # "one poll cycle"


def poller(procs: Procs, url: str, **env: str) -> ServiceProcess:
    return procs(poller_process(url, TICKERS, POLL_FREQ=POLL_FREQ, **env))


async def held(redis: Redis, symbol: str) -> Any:
    return await redis.hget("prices", symbol)


async def test_watchlist_gets_a_symbol_on_demand_within_one_poll_cycle(
    redis_server: Any, procs: Procs
) -> None:
    metrics_port = free_port()
    poller(procs, redis_server.url, METRICS_PORT=str(metrics_port))
    api = start_api(procs, redis_server.url)
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await recv(ws)  # the full snapshot
        await ws.send('{"watchlist": ["IBM"]}')
        reply = await recv_until(ws, lambda m: m.get("type") == "snapshot")
        assert reply["unknown"] == ["IBM"]  # not held yet: asked for
        # One poll cycle (1 s) plus the poller's 1 s refresh; the limit is generous.
        diff = await recv_until(ws, lambda m: m.get("type") == "diff", limit=15)
        assert set(diff["data"]) == {"IBM"}
        assert diff["data"]["IBM"]["price"] is not None
        assert diff["data"]["IBM"]["stale"] is False
        # And it keeps coming: the symbol is polled like TICKERS.
        later = await recv_until(ws, lambda m: m.get("type") == "diff", limit=15)
        assert later["seq"] > diff["seq"]
    polled = await asyncio.to_thread(scrape, f"http://127.0.0.1:{metrics_port}/metrics")
    assert polled.get("tickerhub_poller_symbols", mode="static") == len(TICKERS)
    assert polled.get("tickerhub_poller_symbols", mode="on_demand") == 1
    redis = Redis.from_url(redis_server.url)
    try:
        assert await redis.zscore("interest", "IBM") is not None
        assert await redis.hget("interest:config", "room") == b"998"
    finally:
        await redis.aclose()


async def test_a_symbol_the_source_does_not_know_gets_unknown_symbol(
    redis_server: Any, procs: Procs
) -> None:
    poller(procs, redis_server.url)
    api = start_api(procs, redis_server.url)
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await recv(ws)
        await ws.send('{"watchlist": ["ZZZZ", "AAPL"]}')
        await recv_until(ws, lambda m: m.get("type") == "snapshot")
        error = await recv_until(ws, lambda m: m.get("type") == "error", limit=15)
        assert error["code"] == "unknown_symbol"
        assert error["symbols"] == ["ZZZZ"]
        assert error["watchlist"] == ["AAPL"]  # it left the filter, the rest stays
        # Asking again is answered from the record, and the connection lives on.
        await ws.send('{"subscribe": ["ZZZZ"]}')
        again = await recv_until(ws, lambda m: m.get("type") == "error", limit=15)
        assert again["code"] == "unknown_symbol"
        await ws.send("ping")
        assert await recv_until(ws, lambda m: m == "pong") == "pong"
    async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
        response = await http.get("/tickers/zzzz")
        assert response.status_code == 404
        assert response.json() == {"detail": "unknown symbol: ZZZZ"}
    redis = Redis.from_url(redis_server.url)
    try:
        assert await redis.zscore("interest", "ZZZZ") is None  # takes no capacity
        assert await redis.zscore("interest:unknown", "ZZZZ") is not None
        assert await held(redis, "ZZZZ") is None
    finally:
        await redis.aclose()


async def test_rest_waits_for_the_first_quote(redis_server: Any, procs: Procs) -> None:
    poller(procs, redis_server.url)
    api = start_api(procs, redis_server.url, ON_DEMAND_WAIT="10")
    async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
        response = await http.get("/tickers/orcl")
        assert response.status_code == 200, response.text
        assert response.json()["symbol"] == "ORCL"
        assert response.json()["price"] is not None
        assert "X-TickerHub-Seq" in response.headers
        # Now held: answered at once, and listed in the snapshot.
        assert (await http.get("/tickers/ORCL")).status_code == 200
        assert "ORCL" in (await http.get("/tickers")).json()


async def test_a_symbol_on_demand_gets_news_too(redis_server: Any, procs: Procs) -> None:
    poller(procs, redis_server.url, NEWS_INTERVAL="0.5", NEWS_MAX_SYMBOLS="3")
    api = start_api(procs, redis_server.url, ON_DEMAND_WAIT="10")
    async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
        assert (await http.get("/tickers/ORCL")).status_code == 200

        async def news_of(symbol: str) -> list[Any]:
            return list((await http.get("/news", params={"symbols": symbol})).json())

        async def orcl_news() -> bool:
            return any(item["tickers"] == ["ORCL"] for item in await news_of("ORCL"))

        await eventually(orcl_news, "news for ORCL, a symbol on demand")
        assert await news_of("AAPL")  # TICKERS keep theirs


async def test_rest_says_504_when_the_first_quote_is_late(redis_server: Any, procs: Procs) -> None:
    api = start_api(procs, redis_server.url, ON_DEMAND_WAIT="0.5")
    redis = Redis.from_url(redis_server.url)
    try:
        async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
            # No on-demand poller runs: answered as the fixed-list hub does, nothing recorded.
            response = await http.get("/tickers/IBM")
            assert response.status_code == 404
            assert response.json() == {"detail": "unknown symbol: IBM"}
            assert await redis.exists("interest") == 0
            # A poller that states its config but never polls (hung, or far too slow).
            await redis.hset("interest:config", mapping={"room": 10, "ttl": 600_000})
            response = await http.get("/tickers/IBM")
        assert response.status_code == 504
        assert "no quote for IBM yet" in response.json()["detail"]
        assert await redis.zscore("interest", "IBM") is not None  # asking again gets it
    finally:
        await redis.aclose()


async def test_capacity_is_refused_with_a_clear_error(redis_server: Any, procs: Procs) -> None:
    poller(procs, redis_server.url, MAX_SYMBOLS="3")  # AAPL, MSFT and one on demand
    api = start_api(procs, redis_server.url, ON_DEMAND_WAIT="10")
    redis = Redis.from_url(redis_server.url)
    try:
        # The poller states its room (MAX_SYMBOLS - TICKERS); the api obeys it.
        await eventually(lambda: redis.hget("interest:config", "room"), "the poller's room")
        async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
            assert (await http.get("/tickers/IBM")).status_code == 200
            refused = await http.get("/tickers/ORCL")
            assert refused.status_code == 503
            assert "capacity" in refused.json()["detail"]
            assert "ORCL" in refused.json()["detail"]
            # A held symbol on demand is still served.
            assert (await http.get("/tickers/IBM")).status_code == 200
        async with websockets.connect(f"{api.ws}/ws/prices") as ws:
            await recv(ws)
            await ws.send('{"watchlist": ["IBM", "ORCL", "AAPL"]}')
            error = await recv_until(ws, lambda m: m.get("type") == "error", limit=15)
            assert error["code"] == "capacity"
            assert error["symbols"] == ["ORCL"]
            assert error["watchlist"] == ["AAPL", "IBM"]
        assert await held(redis, "ORCL") is None
    finally:
        await redis.aclose()


async def test_interest_expires_then_the_quote_goes_stale_then_is_removed(
    redis_server: Any, procs: Procs
) -> None:
    ttl = "3"
    poller(procs, redis_server.url, INTEREST_TTL=ttl)
    api = start_api(procs, redis_server.url, INTEREST_TTL=ttl)
    redis = Redis.from_url(redis_server.url)
    try:
        async with websockets.connect(f"{api.ws}/ws/prices") as ws:
            await recv(ws)
            await ws.send('{"watchlist": ["IBM"]}')
            await recv_until(ws, lambda m: m.get("type") == "diff" and "IBM" in m["data"])
            # Watched for longer than the TTL: the api's refresh keeps it polled.
            seq_before = (await recv_until(ws, lambda m: m.get("type") == "diff"))["seq"]
            await eventually(
                lambda: _later_diff(ws, seq_before + 6), "IBM still polled after 6 diffs"
            )
        # The last watcher left: stale after the TTL ...
        stale = await eventually(
            lambda: _stale(redis, "IBM"), "IBM marked stale", limit=30, interval=0.2
        )
        assert stale["price"] is not None  # the last good values stay
        # ... then removed, by a reset (a new epoch), with its interest and bars.
        epoch = await redis.get("prices:epoch")
        await eventually(
            lambda: _gone(redis, "IBM"), "IBM removed from the snapshot", limit=30, interval=0.2
        )
        assert await redis.get("prices:epoch") != epoch
        await eventually(
            lambda: _forgotten(redis, "IBM"), "IBM's interest forgotten", limit=15, interval=0.2
        )
        assert await redis.exists("bars:IBM") == 0
        assert set(await redis.hkeys("prices")) == {b"AAPL", b"MSFT"}
        async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
            assert "IBM" not in (await http.get("/tickers")).json()
    finally:
        await redis.aclose()


async def _later_diff(ws: Any, seq: int) -> bool:
    message = await recv_until(ws, lambda m: m.get("type") == "diff", limit=15)
    return bool(message["seq"] >= seq and "IBM" in message["data"])


async def _stale(redis: Redis, symbol: str) -> Any:
    import orjson

    raw = await redis.hget("prices", symbol)
    quote = orjson.loads(raw) if raw else None
    return quote if quote and quote.get("stale") else None


async def _gone(redis: Redis, symbol: str) -> bool:
    return await redis.hget("prices", symbol) is None


async def _forgotten(redis: Redis, symbol: str) -> bool:
    return await redis.zscore("interest", symbol) is None


async def test_on_demand_off_keeps_the_fixed_list(redis_server: Any, procs: Procs) -> None:
    poller(procs, redis_server.url, ON_DEMAND="false")
    api = start_api(procs, redis_server.url, ON_DEMAND="false")
    async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
        response = await http.get("/tickers/IBM")
        assert response.status_code == 404
        assert response.json() == {"detail": "unknown symbol: IBM"}
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await recv(ws)
        await ws.send('{"watchlist": ["IBM", "AAPL"]}')
        reply = await recv_until(ws, lambda m: m.get("type") == "snapshot")
        assert reply["unknown"] == ["IBM"]
        # Three poll cycles: AAPL moves, IBM never comes, nothing is refused.
        for _ in range(3):
            diff = await recv_until(ws, lambda m: m.get("type") in ("diff", "error"), limit=15)
            assert diff["type"] == "diff"
            assert set(diff["data"]) == {"AAPL"}
    redis = Redis.from_url(redis_server.url)
    try:
        keys = set(await redis.keys("interest*"))
        assert keys == set()
        assert set(await redis.hkeys("prices")) == {b"AAPL", b"MSFT"}
    finally:
        await redis.aclose()


async def test_a_second_api_process_sees_the_same_interest(redis_server: Any, procs: Procs) -> None:
    poller(procs, redis_server.url, MAX_SYMBOLS="3")
    first = start_api(procs, redis_server.url, ON_DEMAND_WAIT="10")
    second: ApiProcess = start_api(procs, redis_server.url, ON_DEMAND_WAIT="10")
    async with websockets.connect(f"{first.ws}/ws/prices") as ws:
        await recv(ws)
        await ws.send('{"watchlist": ["IBM"]}')
        await recv_until(ws, lambda m: m.get("type") == "diff" and "IBM" in m["data"], limit=15)
        async with httpx.AsyncClient(base_url=second.http, timeout=30) as http:
            # The second process holds IBM (the same snapshot) and counts it against
            # MAX_SYMBOLS (the same interest set): no room for another.
            assert (await http.get("/tickers/IBM")).status_code == 200
            refused = await http.get("/tickers/ORCL")
            assert refused.status_code == 503, refused.text
        async with websockets.connect(f"{second.ws}/ws/prices?symbols=ORCL") as other:
            error = await recv_until(other, lambda m: m.get("type") == "error", limit=15)
            assert error["code"] == "capacity"
