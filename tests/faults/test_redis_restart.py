"""Redis stops mid-stream and comes back empty: nobody crashes, every client converges."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import websockets
from redis.asyncio import Redis

from tickerhub_testkit.processes import start_api
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.ws import recv, recv_until

from .conftest import TICKERS, Client, converge, get, get_json, poller_process, wait_status

pytestmark = pytest.mark.integration

WATCH = ["AAPL", "MSFT"]


async def readyz(api: Any) -> tuple[int, dict[str, Any]]:
    response = await get(f"{api.http}/readyz")
    return response.status_code, response.json()


async def _readyz_says_redis_down(api: Any) -> bool:
    status, body = await readyz(api)
    return status == 503 and body["redis"] is False


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
        await eventually(lambda: set(everything.view.quotes) == set(TICKERS), "all symbols")
        await eventually(lambda: watching.view.diffs >= 3, "diffs for the watchlist")
        seq_before = int(await redis.get("prices:seq"))
        snapshots_before = [c.view.snapshots for c in clients]

        own_redis_server.stop()
        body = (
            await wait_status(f"{api.http}/readyz", 503, "readyz 503 while Redis is gone")
        ).json()
        assert set(body) >= {"status", "redis", "snapshot", "seq", "symbols", "connections"}
        assert body["status"] != "ready"
        # The probe's Redis check is cached for about a second (a probe flood cannot
        # starve it), so the 503 may come from the subscription first: then it says so.
        await eventually(
            lambda: _readyz_says_redis_down(api), "readyz reporting redis: false", limit=10
        )
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
        await eventually(lambda: _hlen_is(redis, len(TICKERS)), "snapshot rewritten")
        assert int(await redis.get("prices:seq")) > seq_before

        # Every client got a fresh full snapshot after the gap ...
        await eventually(
            lambda: all(
                c.view.snapshots > n for c, n in zip(clients, snapshots_before, strict=True)
            ),
            "a fresh snapshot after the gap",
        )
        fresh = [m for m in watching.view.messages if isinstance(m, dict)]
        last_snapshot = [m for m in fresh if m.get("type") == "snapshot"][-1]
        assert set(last_snapshot["data"]) == set(WATCH)
        assert last_snapshot["seq"] > seq_before
        news_snapshot = await recv_until(
            news, lambda m: isinstance(m, dict) and m.get("type") == "snapshot"
        )
        assert isinstance(news_snapshot["data"], list)
        # ... and diffs flow again; once the poller is quiet, views equal GET /tickers.
        diffs = [c.view.diffs for c in clients]
        await eventually(
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


async def _hlen_is(redis: Redis, expected: int) -> bool:
    try:
        return await redis.hlen("prices") == expected
    except Exception:  # the client reconnects on its own; the next poll will tell
        return False


async def test_ws_commands_while_redis_is_down(own_redis_server: Any, procs: Any) -> None:
    """A watchlist sent while Redis is gone gets an answer (a reply or ``unavailable``),
    never a dropped connection; once Redis is back the client gets its snapshot."""
    procs(poller_process(own_redis_server.url, SIM_VOLATILITY="0"))
    api = start_api(procs, own_redis_server.url)
    client = await Client.connect(f"{api.ws}/ws/prices", name="c")
    redis = Redis.from_url(own_redis_server.url)
    try:
        await eventually(lambda: set(client.view.quotes) == set(TICKERS), "first snapshot")
        stored_before = await redis.hgetall("prices")
        seq_before = int(await redis.get("prices:seq"))
        own_redis_server.stop()
        await wait_status(f"{api.http}/readyz", 503, "readyz 503")
        before = len(client.view.messages)
        await client.ws.send(orjson.dumps({"watchlist": ["AAPL"]}).decode())
        await eventually(lambda: len(client.view.messages) > before, "an answer while down")
        answer = client.view.messages[before]
        assert isinstance(answer, dict)
        assert answer["type"] in ("snapshot", "error"), answer
        if answer["type"] == "error":
            assert answer["code"] == "unavailable"
        await client.ping()
        own_redis_server.start()
        await eventually(
            lambda: any(
                isinstance(m, dict) and m.get("type") == "snapshot" and set(m["data"]) == {"AAPL"}
                for m in client.view.messages[before:]
            ),
            "the watchlist's snapshot once Redis is back",
        )
        await converge(api, [client], [["AAPL"]])
        assert client.view.closed is None
        # The flat source's poller wrote back exactly what Redis lost, and its sequence
        # went on instead of starting over.
        await redis.aclose()
        redis = Redis.from_url(own_redis_server.url)
        await eventually(lambda: _hlen_is(redis, len(TICKERS)), "snapshot rewritten")
        assert await redis.hgetall("prices") == stored_before
        assert int(await redis.get("prices:seq")) > seq_before
    finally:
        await client.close()
        await redis.aclose()


async def test_a_producer_starting_over_on_the_emptied_redis(
    own_redis_server: Any, procs: Any
) -> None:
    """Redis restarts empty and a producer begins again at seq 1, below what the api and
    its clients hold: the api takes it as a reset and every client converges on it."""
    api = start_api(procs, own_redis_server.url)
    redis = Redis.from_url(own_redis_server.url)
    everything = await Client.connect(f"{api.ws}/ws/prices", name="all")
    watching = await Client.connect(f"{api.ws}/ws/prices", ["TSLA"], name="watchlist")
    clients = [everything, watching]
    try:
        first = Producer(redis)
        for i in range(3):
            await first.publish({"AAPL": {"price": 1.0 + i}, "MSFT": {"price": 1.0}})
        await eventually(lambda: everything.view.seq == first.seq, "the first producer's diffs")
        own_redis_server.restart()
        await redis.aclose()
        redis = Redis.from_url(own_redis_server.url)
        second = Producer(redis)  # starting over on the empty Redis: seq 1, 2
        await second.publish({"TSLA": {"price": 7.0}})
        await second.publish({"TSLA": {"price": 8.0}})
        assert second.seq < first.seq
        await eventually(lambda: everything.view.quotes == second.quotes, "the new data")
        assert await get_json(f"{api.http}/tickers") == second.quotes
        await converge(api, clients, [None, ["TSLA"]])
        for client in clients:
            assert client.view.closed is None, client.view.closed
    finally:
        for client in clients:
            await client.close()
        await redis.aclose()
