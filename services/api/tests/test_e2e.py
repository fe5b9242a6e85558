"""End to end: real redis-server, the api (and the poller) as subprocesses, real clients.

Every test runs twice: with the direct frame path (the default) and with
``WS_FAST_PATH=false`` (plain ASGI sends, ``stream/senders.AsgiSender``); the api
subprocesses inherit the environment the ``ws_path`` fixture sets.
Timeouts here only keep a broken build from hanging; nothing asserts a speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import httpx
import orjson
import psutil
import pytest
import websockets
from redis.asyncio import Redis

from tickerhub_client import QuoteView
from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_core.store import NewsStore
from tickerhub_testkit.processes import Procs, poller_process, start_api
from tickerhub_testkit.producer import Producer, full_quote, news_item
from tickerhub_testkit.wait import WAIT, eventually
from tickerhub_testkit.ws import recv

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, params=["true", "false"], ids=["fast-path", "asgi-path"])
def ws_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``WS_FAST_PATH`` for every api this test starts (testkit's ServiceProcess inherits it)."""
    monkeypatch.setenv("WS_FAST_PATH", request.param)
    return request.param


class View(QuoteView):
    """tickerhub_client's merged view, keeping every message for the assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def apply(self, frame: Any) -> Any:
        self.messages.append(frame)
        return super().apply(frame)


async def follow(ws: Any, view: View) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for frame in ws:
            view.apply(frame if frame == "pong" else orjson.loads(frame))


async def get_json(url: str) -> Any:
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
        response.raise_for_status()
        return response.json()


async def test_snapshot_then_diffs(redis_server: Any, four_tickers: Producer, procs: Procs) -> None:
    api = start_api(procs, redis_server.url)
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        snapshot = await recv(ws)
        assert snapshot["type"] == "snapshot"
        assert snapshot["seq"] == four_tickers.seq
        assert snapshot["data"] == four_tickers.quotes
        seq = await four_tickers.publish({"AAPL": {"price": 101.0}})
        diff = await recv(ws)
        assert diff["type"] == "diff"
        assert diff["seq"] == seq
        assert diff["data"] == {"AAPL": {"symbol": "AAPL", "seq": seq, "price": 101.0}}


async def test_watchlist_receives_only_its_symbols_and_converges(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url)
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await recv(ws)
        await ws.send(orjson.dumps({"watchlist": ["aapl", "msft", "NEWCO"]}).decode())
        reply = await recv(ws)
        assert set(reply["data"]) == {"AAPL", "MSFT"}
        assert reply["unknown"] == ["NEWCO"]
        view = View()
        view.apply(reply)
        task = asyncio.create_task(follow(ws, view))
        for i in range(200):
            await four_tickers.publish(
                {
                    "AAPL": {"price": 100 + i},
                    "TSLA": {"price": 200 + i},
                    **({"MSFT": {"volume": i}} if i % 3 else {}),
                    **({"NEWCO": {"price": 1.0}} if i == 150 else {}),
                }
            )
        await eventually(lambda: view.quotes.get("AAPL", {}).get("price") == 299, "last diff")
        task.cancel()
    seen = {s for m in view.messages if isinstance(m, dict) for s in m.get("data", {})}
    assert seen == {"AAPL", "MSFT", "NEWCO"}
    rest = await get_json(f"{api.http}/tickers")
    assert view.quotes == {s: rest[s] for s in ("AAPL", "MSFT", "NEWCO")}


async def test_subscribe_unsubscribe_and_errors(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, WS_MAX_SYMBOLS="3", WS_MAX_FRAME_BYTES="2048")
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await recv(ws)
        await ws.send('{"watchlist": ["AAPL"]}')
        await recv(ws)
        await ws.send('{"subscribe": ["msft"]}')
        reply = await recv(ws)
        assert reply["partial"] is True
        assert set(reply["data"]) == {"MSFT"}
        for bad, code in [
            ("hello", "bad_json"),
            ("[1]", "bad_message"),
            ('{"watchlist": "AAPL"}', "bad_type"),
            ('{"subscribe": ["no way"]}', "bad_symbol"),
            ('{"subscribe": ["GOOG", "TSLA"]}', "too_many_symbols"),
        ]:
            await ws.send(bad)
            error = await recv(ws)
            assert (error["type"], error["code"]) == ("error", code)
        await ws.send(b"\x00binary")
        assert (await recv(ws))["code"] == "binary_not_supported"
        await ws.send('{"unsubscribe": ["AAPL"]}')
        assert await recv(ws) == {
            "type": "unsubscribed",
            "symbols": ["AAPL"],
            "watchlist": ["MSFT"],
        }
        seq = await four_tickers.publish({"AAPL": {"price": 1.0}, "MSFT": {"price": 2.0}})
        diff = await recv(ws)  # the watchlist survived the errors: MSFT only
        assert diff["seq"] == seq
        assert set(diff["data"]) == {"MSFT"}
        await ws.send("x" * 4096)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009


async def test_readme_browser_client_flow(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    """The README's example: on open, start pinging and send a watchlist; log everything."""
    api = start_api(procs, redis_server.url)
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await ws.send("ping")
        await ws.send(orjson.dumps({"watchlist": ["AAPL", "MSFT"]}).decode())
        frames = [await asyncio.wait_for(ws.recv(), WAIT) for _ in range(3)]
        assert all(isinstance(f, str) for f in frames)  # text frames: evt.data is a string
        assert frames[1] == "pong"  # the README's catch branch logs it as non-JSON
        first, last = orjson.loads(frames[0]), orjson.loads(frames[2])
        assert first["type"] == last["type"] == "snapshot"
        assert set(last["data"]) == {"AAPL", "MSFT"}
        await four_tickers.publish({"TSLA": {"price": 1.0}})
        seq = await four_tickers.publish({"MSFT": {"price": 1.0}})
        diff = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert (diff["type"], diff["seq"], list(diff["data"])) == ("diff", seq, ["MSFT"])
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "pong"


async def test_two_api_processes_serve_the_same_stream(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    apis = [start_api(procs, redis_server.url), start_api(procs, redis_server.url)]
    views = [View(), View()]
    async with (
        websockets.connect(f"{apis[0].ws}/ws/prices") as a,
        websockets.connect(f"{apis[1].ws}/ws/prices") as b,
    ):
        tasks = [asyncio.create_task(follow(ws, v)) for ws, v in zip((a, b), views, strict=True)]
        await eventually(lambda: all(v.seq == four_tickers.seq for v in views), "snapshots")
        for i in range(50):
            last = await four_tickers.publish({"AAPL": {"price": float(i)}, "GOOG": {"volume": i}})
        await eventually(lambda: all(v.seq == last for v in views), "last diff on both")
        for task in tasks:
            task.cancel()
    assert views[0].quotes == views[1].quotes == four_tickers.quotes
    assert await get_json(f"{apis[1].http}/tickers") == four_tickers.quotes


async def test_gap_and_reset_send_a_fresh_snapshot(
    redis_server: Any, redis: Redis, four_tickers: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url)
    keys = RedisKeys()
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await recv(ws)
        await ws.send('{"watchlist": ["AAPL"]}')
        await recv(ws)
        # Changes the api never hears about (a lost message): seq jumps by 3.
        four_tickers.quotes["AAPL"].update(price=555.0, seq=four_tickers.seq + 3)
        await redis.hset(keys.prices, "AAPL", wire.dumps(four_tickers.quotes["AAPL"]))
        await redis.set(keys.prices_seq, four_tickers.seq + 3)
        four_tickers.seq += 3
        seq = await four_tickers.publish({"TSLA": {"price": 1.0}})
        snapshot = await recv(ws)
        assert snapshot["type"] == "snapshot"
        assert snapshot["seq"] == seq
        assert snapshot["data"] == {"AAPL": four_tickers.quotes["AAPL"]}
        # A wholesale reset (e.g. Redis lost its data and a producer rewrote it).
        quotes = {"AAPL": full_quote("AAPL", seq + 1, price=1.0)}
        await four_tickers.store.reset(seq + 1, {s: wire.dumps(q) for s, q in quotes.items()})
        snapshot = await recv(ws)
        assert (snapshot["type"], snapshot["seq"], snapshot["data"]) == (
            "snapshot",
            seq + 1,
            quotes,
        )


async def test_news_stream(redis_server: Any, redis: Redis, procs: Procs) -> None:
    api = start_api(procs, redis_server.url)
    store = NewsStore(redis, RedisKeys())

    await store.add([news_item(1, "AAPL"), news_item(2, "MSFT")], 50)
    async with websockets.connect(f"{api.ws}/ws/news") as ws:
        snapshot = await recv(ws)
        assert [i["id"] for i in snapshot["data"]] == ["id2", "id1"]
        await ws.send('{"watchlist": ["aapl"]}')
        snapshot = await recv(ws)
        assert [i["id"] for i in snapshot["data"]] == ["id1"]
        await store.add([news_item(3, "MSFT"), news_item(4, "AAPL", "TSLA")], 50)
        news = await recv(ws)
        assert news == {"type": "news", "data": [news_item(4, "AAPL", "TSLA")]}
        await ws.send("ping")
        assert await recv(ws) == "pong"


def stalled_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws/prices HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    assert b" 101 " in sock.recv(1024)
    return sock


async def test_stalled_client_blocks_nobody_and_memory_stays_bounded(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, WS_SEND_TIMEOUT="3")
    symbols = [f"S{i:03d}" for i in range(300)]
    await four_tickers.publish({s: {"name": "x" * 100, "price": 1.0} for s in symbols})
    assert api.proc is not None
    rss = psutil.Process(api.proc.pid).memory_info
    stalled = stalled_client(api.port)
    try:
        view = View()
        async with websockets.connect(f"{api.ws}/ws/prices", max_size=None) as ws:
            task = asyncio.create_task(follow(ws, view))

            async def burst(n: int, base: float) -> int:
                last = 0
                for i in range(n):
                    last = await four_tickers.publish(
                        {s: {"price": base + i, "volume": i} for s in symbols}
                    )
                return last

            # Warm up (allocator, first frames), then measure while the stalled client
            # is owed far more than its socket buffers can hold (~20 KiB per diff).
            last = await burst(50, 1000.0)
            await eventually(lambda: view.seq == last, "warm-up diffs")
            before = rss().rss
            for round_ in range(4):
                last = await burst(100, 2000.0 + 1000 * round_)
                # The reading client gets every round in full while the other stalls.
                await eventually(lambda: view.seq == last, "diffs for the reading client")  # noqa: B023 (awaited here)
            grown = rss().rss - before
            task.cancel()
        assert view.quotes == four_tickers.quotes
        # 400 diffs x ~20 KiB = ~8 MiB owed to the stalled client; conflation keeps one
        # pending entry per symbol, so the process does not hold that backlog.
        assert grown < 4 * 1024 * 1024, f"RSS grew by {grown} bytes"
        # Past WS_SEND_TIMEOUT the stalled connection is dropped.
        async with httpx.AsyncClient() as http:

            async def dropped() -> bool:
                return (await http.get(f"{api.http}/readyz")).json()["connections"] == 0

            await eventually(dropped, "the stalled client dropped", interval=0.1)
    finally:
        stalled.close()


async def test_with_the_simulated_poller(redis_server: Any, procs: Procs) -> None:
    poller = procs(poller_process(redis_server.url, ["AAPL", "MSFT", "GOOG", "TSLA"]))
    api = start_api(procs, redis_server.url)
    view = View()
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await ws.send('{"watchlist": ["AAPL", "MSFT"]}')
        task = asyncio.create_task(follow(ws, view))
        await eventually(
            lambda: sum(isinstance(m, dict) and m["type"] == "diff" for m in view.messages) >= 5,
            "diffs from the poller",
        )
        assert poller.stop() == 0
        await asyncio.sleep(0.5)  # let the last diffs arrive
        task.cancel()
    replied = next(i for i, m in enumerate(view.messages) if "watchlist" in m)
    after = view.messages[replied:]
    assert {s for m in after for s in m["data"]} == {"AAPL", "MSFT"}
    rest = await get_json(f"{api.http}/tickers")
    assert view.quotes == {s: rest[s] for s in ("AAPL", "MSFT")}


def test_the_api_reads_the_setting(redis_server: Any, procs: Procs, ws_path: str) -> None:
    """The subprocesses really take the path the fixture chose (what the api logs at start)."""
    api = start_api(procs, redis_server.url, LOG_LEVEL="INFO")
    expected = "direct writes" if ws_path == "true" else "plain ASGI sends"
    assert f"WebSocket frames: {expected}" in api.output(), api.output()
