"""Yahoo's push stream end to end, with real processes over real sockets.

The poller is a subprocess (``python -m tickerhub_testkit.yahoo.poller``: the real
``serve`` with yfinance parsing recorded answers, ``FAKE_YAHOO_QUOTES=live`` so every
poll carries a fresh price) streaming from the fake Yahoo streamer in this process;
the api is a subprocess; Redis is a real redis-server. A ``/ws/prices`` client sees
what a user would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from tickerhub_testkit.metrics import Scrape, scrape
from tickerhub_testkit.net import free_port
from tickerhub_testkit.processes import ApiProcess, Procs, ServiceProcess, start_api
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.ws import recv_until
from tickerhub_testkit.yahoo.streamer import FakeStreamer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SYMBOLS = ("AAPL", "MSFT")
POLL_FREQ = 0.3
LIMIT = 30.0  # generous: a loaded 2-core box


class Stack:
    def __init__(self, poller: ServiceProcess, api: ApiProcess, metrics_port: int) -> None:
        self.poller = poller
        self.api = api
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    async def metrics(self) -> Scrape:
        return await asyncio.to_thread(scrape, self.metrics_url)

    async def polls(self) -> float:
        """Quote requests the poller made to (fake) Yahoo."""
        return (await self.metrics()).sum("tickerhub_poller_source_requests_total")

    async def connected(self) -> float:
        return (await self.metrics()).get("tickerhub_poller_stream_connected", -1)


@pytest.fixture
async def fake() -> AsyncIterator[FakeStreamer]:
    async with FakeStreamer() as server:
        yield server


async def start_stack(procs: Procs, redis_url: str, fake: FakeStreamer, **env: str) -> Stack:
    port = free_port()
    poller = procs(
        ServiceProcess(
            "python",
            {
                "REDIS_URL": redis_url,
                "SOURCE": "yfinance",
                "TICKERS": ",".join(SYMBOLS),
                "POLL_FREQ": str(POLL_FREQ),
                "RECONCILE_FREQ": "600",
                "STREAM_URL": fake.url,
                "NEWS_INTERVAL": "0",
                "METRICS_PORT": str(port),
                "FAKE_YAHOO_QUOTES": "live",
                "LOG_LEVEL": "INFO",
                **env,
            },
            args=["-m", "tickerhub_testkit.yahoo.poller"],
        )
    )
    stack = Stack(poller, start_api(procs, redis_url), port)
    redis = Redis.from_url(redis_url)
    try:  # the first polls are in: every symbol is known to the api
        await eventually(
            lambda: _count(redis.hlen("prices"), len(SYMBOLS)),
            "first polls",
            limit=LIMIT,
            detail=poller.output,
        )
    finally:
        await redis.aclose()
    return stack


async def _count(value: Any, wanted: int) -> bool:
    return await value >= wanted


async def watch(api: ApiProcess, *symbols: str) -> Any:
    ws = await websockets.connect(f"{api.ws}/ws/prices")
    await ws.send('{{"watchlist": [{}]}}'.format(",".join(f'"{s}"' for s in symbols)))
    await recv_until(
        ws, lambda m: m.get("type") == "snapshot" and set(m["data"]) == set(symbols), LIMIT
    )
    return ws


def price_is(symbol: str, price: float) -> Any:
    return lambda m: m.get("type") == "diff" and m["data"].get(symbol, {}).get("price") == price


async def polls_during(stack: Stack, seconds: float) -> float:
    before = await stack.polls()
    await asyncio.sleep(seconds)
    return await stack.polls() - before


async def test_ticks_reach_clients_and_polling_covers_a_stream_outage(
    redis_server: Any, procs: Procs, fake: FakeStreamer
) -> None:
    stack = await start_stack(procs, redis_server.url, fake)
    detail = stack.poller.output
    await eventually(
        lambda: fake.subscribed == set(SYMBOLS), "poller subscribed", limit=LIMIT, detail=detail
    )
    ws = await watch(stack.api, "AAPL")
    try:
        assert fake.tick("AAPL", 512.25, day_volume=123, market_hours=1) == 1
        diff = await recv_until(ws, price_is("AAPL", 512.25), LIMIT)
        assert diff["data"]["AAPL"]["volume"] == 123

        # Stream up: polls are reconciliation only (RECONCILE_FREQ=600), not every 0.3 s.
        await eventually(lambda: stack.connected(), "stream connected gauge", limit=LIMIT)
        assert await polls_during(stack, 2.0) <= 1

        # Stream down (refusing connections): polling at POLL_FREQ delivers at once,
        # not after the 600 s sleep the tickers were in.
        await fake.stop()
        await eventually(
            lambda: _is(stack.connected(), 0),
            "stream disconnected gauge",
            limit=LIMIT,
            detail=detail,
        )
        await eventually(lambda: _more(stack, 5), "polls at POLL_FREQ", limit=LIMIT, detail=detail)
        polled = await recv_until(
            ws, lambda m: m.get("type") == "diff" and "AAPL" in m["data"], LIMIT
        )
        assert polled["data"]["AAPL"]["price"] != 512.25  # a poll's price

        # Stream back: re-subscribed, ticks flow, and polls slow down again.
        await fake.start()
        await eventually(
            lambda: fake.subscribed == set(SYMBOLS), "re-subscribed", limit=LIMIT, detail=detail
        )
        await eventually(lambda: _is(stack.connected(), 1), "connected again", limit=LIMIT)
        await asyncio.sleep(POLL_FREQ * 2)  # a poll already under way may still land
        assert await polls_during(stack, 2.0) <= 1
        fake.tick("AAPL", 600.5)
        await recv_until(ws, price_is("AAPL", 600.5), LIMIT)
    finally:
        await ws.close()
    output = stack.poller.output()
    assert (
        output.count("stream: connection closed") + output.count("stream: ConnectionRefused") <= 2
    ), output


async def _is(value: Any, wanted: float) -> bool:
    return await value == wanted


async def _more(stack: Stack, count: int) -> bool:
    first = getattr(stack, "_first_polls", None)
    now = await stack.polls()
    if first is None:
        stack._first_polls = now  # type: ignore[attr-defined]
        return False
    return now - first >= count


async def test_reconnect_after_a_drop_watchdog_on_silence_and_bad_frames_ignored(
    redis_server: Any, procs: Procs, fake: FakeStreamer
) -> None:
    stack = await start_stack(procs, redis_server.url, fake, STREAM_SILENCE="1.5")
    detail = stack.poller.output
    await eventually(
        lambda: fake.subscribed == set(SYMBOLS), "poller subscribed", limit=LIMIT, detail=detail
    )
    ws = await watch(stack.api, "MSFT")
    try:
        # Garbage, truncated and unknown-symbol frames: ignored, logged once each.
        for _ in range(3):
            fake.send_raw("}}garbage{{")
            fake.send_raw('{"type":"pricing","message":"CgRNU0ZUFQ=="}')  # cut inside a field
            fake.tick("ZZZZ", 1.0, force=True)
        fake.tick("MSFT", 420.5)
        await recv_until(ws, price_is("MSFT", 420.5), LIMIT)
        output = stack.poller.output()
        scraped = await stack.metrics()
        for kind in ("not_base64", "not_pricing_data", "unknown_symbol"):
            assert output.count(f"ignoring a frame ({kind}") == 1, output
            assert scraped.get("tickerhub_poller_stream_ignored_frames_total", kind=kind) == 3
        assert scraped.get("tickerhub_poller_stream_ticks_total") >= 1

        # The streamer drops the connection: the poller reconnects and re-subscribes.
        accepted = fake.accepted
        await fake.drop()
        await eventually(
            lambda: fake.accepted > accepted and fake.subscribed == set(SYMBOLS),
            "reconnected and re-subscribed",
            limit=LIMIT,
            detail=detail,
        )
        fake.tick("MSFT", 421.5)
        await recv_until(ws, price_is("MSFT", 421.5), LIMIT)

        # Silence while the market is open (the polls say REGULAR): the watchdog reconnects.
        accepted = fake.accepted
        await eventually(
            lambda: fake.accepted >= accepted + 2, "watchdog reconnects", limit=LIMIT, detail=detail
        )
        output = stack.poller.output()
        assert output.count("no frame for 1.5s while a market is open") == 1, output
        fake.tick("MSFT", 422.5)
        await recv_until(ws, price_is("MSFT", 422.5), LIMIT)
    finally:
        await ws.close()
    assert stack.poller.proc is not None
    assert stack.poller.proc.poll() is None


async def test_a_symbol_asked_for_on_demand_is_subscribed_on_the_stream_at_once(
    redis_server: Any, procs: Procs, fake: FakeStreamer
) -> None:
    stack = await start_stack(procs, redis_server.url, fake)
    detail = stack.poller.output
    await eventually(
        lambda: fake.subscribed == set(SYMBOLS), "poller subscribed", limit=LIMIT, detail=detail
    )
    async with websockets.connect(f"{stack.api.ws}/ws/prices") as ws:
        await ws.send('{"watchlist": ["IBM"]}')  # not in TICKERS: on demand
        # Subscribed on the stream when the universe grows, not at the next 15 s re-send
        # (the limit is generous for a loaded box; the re-send alone would also pass a
        # 30 s limit, so the first poll's diff is awaited first to keep the two apart).
        await recv_until(ws, lambda m: m.get("type") == "diff" and "IBM" in m["data"], LIMIT)
        await eventually(
            lambda: "IBM" in fake.subscribed, "IBM subscribed", limit=10.0, detail=detail
        )
        fake.tick("IBM", 321.5, day_volume=7, market_hours=1)
        await recv_until(ws, price_is("IBM", 321.5), LIMIT)


async def test_the_stream_is_in_the_source_status(
    redis_server: Any, procs: Procs, fake: FakeStreamer
) -> None:
    stack = await start_stack(procs, redis_server.url, fake)
    detail = stack.poller.output

    async def stream_status() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=stack.api.http) as http:
            body = (await http.get("/status")).json()
        return ((body.get("producer") or {}).get("sources") or {}).get("stream") or {}

    async def stream_is(state: str, connected: bool, ticks: int = 0) -> bool:
        status = await stream_status()
        return (
            status.get("state") == state
            and status.get("connected") is connected
            and (status.get("ticks") or 0) >= ticks
        )

    await eventually(
        lambda: fake.subscribed == set(SYMBOLS), "poller subscribed", limit=LIMIT, detail=detail
    )
    fake.tick("AAPL", 512.25, day_volume=123, market_hours=1)
    await eventually(lambda: stream_is("ok", True, ticks=1), "stream ok", limit=LIMIT)
    await fake.stop()
    await eventually(lambda: stream_is("down", False), "stream down", limit=LIMIT, detail=detail)
    error = (await stream_status())["last_error"]
    assert error["message"], error
    assert fake.url.split("//", 1)[1] not in error["message"]  # no URL in what is shown
