"""Limits: the rate limiter and connection slots (pure, fake clock), then each limit
end to end against the api as a subprocess with a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
import pytest
import websockets

from tickerhub_api.limits import (
    ConnectionSlots,
    MessageLimiter,
    TokenBucket,
    Verdict,
    WarningThrottle,
)
from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.ws import recv

from .conftest import Producer, frames_until_closed


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- units -----------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back at 2/s
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now += 60  # refills to the burst, not beyond
    assert sum(bucket.take() for _ in range(10)) == 3


def test_token_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=1, burst=0)
    with pytest.raises(ValueError, match="strikes"):
        MessageLimiter(rate=1, burst=1, strikes=0)


def test_message_limiter_rejects_then_closes_on_persistent_abuse() -> None:
    clock = FakeClock()
    limiter = MessageLimiter(rate=1.0, burst=2, strikes=3, window=10.0, clock=clock)
    verdicts = [limiter.check() for _ in range(6)]
    assert verdicts == [Verdict.ALLOW] * 2 + [Verdict.REJECT] * 3 + [Verdict.ABUSE]


def test_message_limiter_forgets_old_rejections() -> None:
    clock = FakeClock()
    limiter = MessageLimiter(rate=1.0, burst=1, strikes=2, window=10.0, clock=clock)
    # One rejection every 6 s never puts more than 2 in a 10 s window: never abuse.
    for _ in range(20):
        assert limiter.check() is Verdict.ALLOW
        assert limiter.check() is Verdict.REJECT
        clock.now += 6.0
    assert limiter.rate == 1.0


def test_message_limiter_steady_client_is_never_rejected() -> None:
    clock = FakeClock()
    limiter = MessageLimiter(rate=10.0, burst=20, strikes=1, clock=clock)
    for _ in range(1000):
        clock.now += 0.1
        assert limiter.check() is Verdict.ALLOW


def test_warning_throttle_one_line_a_minute_per_kind_with_a_count() -> None:
    clock = FakeClock()
    throttle = WarningThrottle(interval=60.0, clock=clock)
    assert throttle.hit("a") == 1
    assert [throttle.hit("a") for _ in range(5)] == [None] * 5
    assert throttle.hit("b") == 1  # kinds are independent
    clock.now += 60
    assert throttle.hit("a") == 6  # the five held back, and this one
    assert throttle.hit("a") is None


def test_connection_slots() -> None:
    slots = ConnectionSlots(2)
    assert slots.acquire()
    assert slots.acquire()
    assert not slots.acquire()
    assert slots.in_use == 2
    slots.release()
    assert slots.acquire()
    for _ in range(5):
        slots.release()
    assert slots.in_use == 0


# -- end to end ----------------------------------------------------------------------


@pytest.mark.integration
async def test_max_connections_refuses_with_1013_and_frees_slots(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, WS_MAX_CONNECTIONS="2")
    prices = await websockets.connect(f"{api.ws}/ws/prices")
    news = await websockets.connect(f"{api.ws}/ws/news")
    assert (await recv(prices))["type"] == "snapshot"
    assert (await recv(news))["type"] == "snapshot"
    async with websockets.connect(f"{api.ws}/ws/prices") as third:
        frames, close = await frames_until_closed(third)
    assert frames == []
    assert close.code == 1013
    assert "try again" in close.reason
    # The two admitted clients are untouched.
    await prices.send("ping")
    assert await recv(prices) == "pong"
    # A slot frees when a client leaves.
    await news.close()

    async def admitted() -> bool:
        async with websockets.connect(f"{api.ws}/ws/news") as again:
            message: Any = None
            with contextlib.suppress(websockets.ConnectionClosed):
                message = await recv(again)
            return isinstance(message, dict) and message.get("type") == "snapshot"

    await eventually(admitted, "a freed slot", limit=10, interval=0.05)
    await prices.close()


@pytest.mark.integration
async def test_message_rate_limit_errors_then_closes_with_1008(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(
        procs,
        redis_server.url,
        WS_MAX_MESSAGES_PER_SECOND="1",
        WS_MESSAGE_BURST="3",
        WS_RATE_LIMIT_STRIKES="5",
    )
    async with (
        websockets.connect(f"{api.ws}/ws/prices") as flooder,
        websockets.connect(f"{api.ws}/ws/prices") as neighbour,
    ):
        await recv(flooder)
        await recv(neighbour)
        # Burst of 3 allowed, then rejected: not processed (no watchlist reply).
        for _ in range(3):
            await flooder.send("ping")
        await flooder.send(orjson.dumps({"watchlist": ["AAPL"]}).decode())
        replies = [await recv(flooder) for _ in range(4)]
        assert replies[:3] == ["pong"] * 3
        assert replies[3]["type"] == "error"
        assert replies[3]["code"] == "rate_limited"
        # Keep flooding: more than 5 rejections within 10 s closes with 1008.
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(10):
                await flooder.send("ping")
        frames, close = await frames_until_closed(flooder)
        assert close.code == 1008
        assert all(f == "pong" or f["code"] == "rate_limited" for f in frames)
        assert not any(isinstance(f, dict) and f.get("type") == "snapshot" for f in frames)
        # The neighbour is unaffected and its own budget is intact.
        await neighbour.send("ping")
        assert await recv(neighbour) == "pong"


@pytest.mark.integration
async def test_idle_timeout_closes_silent_clients_with_4000_only(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, WS_IDLE_TIMEOUT="1")
    async with (
        websockets.connect(f"{api.ws}/ws/prices") as silent,
        websockets.connect(f"{api.ws}/ws/prices") as chatty,
    ):
        assert (await recv(silent))["type"] == "snapshot"
        assert (await recv(chatty))["type"] == "snapshot"
        started = time.monotonic()
        # The chatty client pings every 0.3 s for 2.5 s: well past the timeout.
        while time.monotonic() - started < 2.5:
            await chatty.send("ping")
            assert await recv(chatty) == "pong"
            await asyncio.sleep(0.3)
        frames, close = await frames_until_closed(silent)
        assert frames == []
        assert close.code == 4000
        assert close.reason == "idle timeout"
        await chatty.send("ping")
        assert await recv(chatty) == "pong"


@pytest.mark.integration
async def test_idle_timeout_is_off_by_default(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, WS_PING_INTERVAL="0.2", WS_PING_TIMEOUT="1")
    async with websockets.connect(f"{api.ws}/ws/prices") as listener:
        assert (await recv(listener))["type"] == "snapshot"
        await asyncio.sleep(2.0)  # only answers the server's pings (the library does)
        seq = await aapl_msft.publish({"AAPL": {"price": 101.0}})
        assert (await recv(listener))["seq"] == seq


@pytest.mark.integration
async def test_sockets_still_authenticating_cannot_lock_out_a_client_with_a_key(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    """Keyless clients that reconnect on every 1008 hold only WS_MAX_PENDING_AUTH's
    slots; WS_MAX_CONNECTIONS counts authenticated connections alone."""
    key = "k3y-0123456789abcdef-ONE"
    api = start_api(
        procs,
        redis_server.url,
        API_KEYS=key,
        WS_MAX_CONNECTIONS="3",
        WS_MAX_PENDING_AUTH="5",
        WS_AUTH_TIMEOUT="1",
    )
    stop = asyncio.Event()
    refusals: list[int] = []

    async def keyless() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, websockets.WebSocketException, TimeoutError):
                async with websockets.connect(f"{api.ws}/ws/prices") as ws:
                    _, close = await frames_until_closed(ws)
                    refusals.append(close.code)

    flood = [asyncio.create_task(keyless()) for _ in range(20)]
    try:
        await eventually(lambda: len(refusals) >= 20, "keyless clients refused, reconnecting")
        for _ in range(5):
            async with websockets.connect(
                f"{api.ws}/ws/prices", additional_headers={"X-API-Key": key}
            ) as ws:
                assert (await recv(ws))["type"] == "snapshot"
        # The ceiling still holds for authenticated connections.
        keyed = [
            await websockets.connect(f"{api.ws}/ws/prices", additional_headers={"X-API-Key": key})
            for _ in range(3)
        ]
        for ws in keyed:
            assert (await recv(ws))["type"] == "snapshot"
        async with websockets.connect(
            f"{api.ws}/ws/prices", additional_headers={"X-API-Key": key}
        ) as fourth:
            frames, close = await frames_until_closed(fourth)
        assert frames == []
        assert close.code == 1013
        for ws in keyed:
            await ws.close()
    finally:
        stop.set()
        for task in flood:
            task.cancel()
        await asyncio.gather(*flood, return_exceptions=True)
    # Keyless clients got 1008 (timeout) or 1013 (pending budget full), nothing else.
    assert set(refusals) <= {1008, 1013}
    assert 1013 in refusals  # 20 reconnecting clients over a budget of 5
    warnings = [line for line in api.output().splitlines() if "WS_MAX_PENDING_AUTH (5)" in line]
    assert 1 <= len(warnings) <= 2  # rate-limited: one a minute, with a count
