"""Redis stops mid-stream and comes back empty: nobody crashes, every client converges."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import websockets
from redis.asyncio import Redis

from .conftest import (
    TICKERS,
    Client,
    converge,
    get,
    poller_process,
    recv,
    start_api,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.integration

WATCH = ["AAPL", "MSFT"]


async def readyz(api: Any) -> tuple[int, dict[str, Any]]:
    response = await get(f"{api.http}/readyz")
    return response.status_code, response.json()


async def test_redis_restart_mid_stream(own_redis_server: Any, procs: Any) -> None:
    poller = procs(poller_process(own_redis_server.url))
    api = start_api(procs, own_redis_server.url)
    redis = Redis.from_url(own_redis_server.url)
    everything = await Client.connect(f"{api.ws}/ws/prices", name="all")
    watching = await Client.connect(f"{api.ws}/ws/prices", WATCH, name="watchlist")
    news = await websockets.connect(f"{api.ws}/ws/news", open_timeout=30)
    clients = [everything, watching]
    try:
        assert (await recv(news))["type"] == "snapshot"
        await wait_for(lambda: set(everything.view.quotes) == set(TICKERS), "all symbols")
        await wait_for(lambda: watching.view.diffs >= 3, "diffs for the watchlist")
        seq_before = int(await redis.get("prices:seq"))
        snapshots_before = [c.view.snapshots for c in clients]

        own_redis_server.stop()
        body = (
            await wait_status(f"{api.http}/readyz", 503, "readyz 503 while Redis is gone")
        ).json()
        assert set(body) >= {"status", "redis", "snapshot", "seq", "symbols", "connections"}
        assert body["status"] != "ready"
        assert body["redis"] is False
        # While Redis is gone: the processes live, the connections stay open and answer.
        await asyncio.sleep(1.0)
        assert api.alive, api.output()
        assert poller.proc.poll() is None, poller.output()
        for client in clients:
            await client.ping()
            assert client.view.closed is None
        await news.send("ping")
        assert await recv(news) == "pong"
        assert (await readyz(api))[0] == 503

        own_redis_server.start()  # empty: it persists nothing
        await redis.aclose()
        redis = Redis.from_url(own_redis_server.url)
        await wait_status(f"{api.http}/readyz", 200, "readyz 200 once Redis is back")
        # The poller wrote its snapshot back, and the sequence did not restart at 1.
        await wait_for_async(lambda: _hlen(redis), len(TICKERS), "snapshot rewritten")
        assert int(await redis.get("prices:seq")) > seq_before

        # Every client got a fresh full snapshot after the gap ...
        await wait_for(
            lambda: all(
                c.view.snapshots > n for c, n in zip(clients, snapshots_before, strict=True)
            ),
            "a fresh snapshot after the gap",
        )
        fresh = [m for m in watching.view.messages if isinstance(m, dict)]
        last_snapshot = [m for m in fresh if m.get("type") == "snapshot"][-1]
        assert set(last_snapshot["data"]) == set(WATCH)
        assert last_snapshot["seq"] > seq_before
        news_snapshot = await recv_type(news, "snapshot")
        assert isinstance(news_snapshot["data"], list)
        # ... and diffs flow again; once the poller is quiet, views equal GET /tickers.
        diffs = [c.view.diffs for c in clients]
        await wait_for(
            lambda: all(c.view.diffs > d for c, d in zip(clients, diffs, strict=True)),
            "diffs after the restart",
        )
        assert poller.stop() == 0, poller.output()
        await converge(api, clients, [None, WATCH])
        for client in clients:
            assert client.view.closed is None, client.view.closed
            assert not client.view.seq_went_back
        assert api.alive
        assert "Traceback" not in api.output(), api.output()
        assert "Traceback" not in poller.output(), poller.output()
    finally:
        for client in clients:
            await client.close()
        await news.close()
        await redis.aclose()


async def _hlen(redis: Redis) -> int:
    try:
        return await redis.hlen("prices")
    except Exception:
        return -1


async def wait_for_async(fetch: Any, expected: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while (value := await fetch()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{what}: {value!r}"
        await asyncio.sleep(0.05)


async def recv_type(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        message = await recv(ws)
        if isinstance(message, dict) and message.get("type") == kind:
            return message


async def test_ws_commands_while_redis_is_down(own_redis_server: Any, procs: Any) -> None:
    """A watchlist sent while Redis is gone gets an answer (a reply or ``unavailable``),
    never a dropped connection; once Redis is back the client gets its snapshot."""
    procs(poller_process(own_redis_server.url, SIM_VOLATILITY="0"))
    api = start_api(procs, own_redis_server.url)
    client = await Client.connect(f"{api.ws}/ws/prices", name="c")
    try:
        await wait_for(lambda: set(client.view.quotes) == set(TICKERS), "first snapshot")
        own_redis_server.stop()
        await wait_status(f"{api.http}/readyz", 503, "readyz 503")
        before = len(client.view.messages)
        await client.ws.send(orjson.dumps({"watchlist": ["AAPL"]}).decode())
        await wait_for(lambda: len(client.view.messages) > before, "an answer while down")
        answer = client.view.messages[before]
        assert isinstance(answer, dict)
        assert answer["type"] in ("snapshot", "error"), answer
        if answer["type"] == "error":
            assert answer["code"] == "unavailable"
        await client.ping()
        own_redis_server.start()
        await wait_for(
            lambda: any(
                isinstance(m, dict) and m.get("type") == "snapshot" and set(m["data"]) == {"AAPL"}
                for m in client.view.messages[before:]
            ),
            "the watchlist's snapshot once Redis is back",
        )
        await converge(api, [client], [["AAPL"]])
        assert client.view.closed is None
    finally:
        await client.close()
