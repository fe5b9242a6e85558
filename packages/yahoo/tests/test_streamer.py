"""The stream's connection loop against the fake Yahoo streamer (a real WebSocket server)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from tickerhub_testkit.wait import eventually
from tickerhub_testkit.yahoo.streamer import FakeStreamer, pricing_frame
from tickerhub_yahoo.pricing import Tick
from tickerhub_yahoo.streamer import YahooStreamer, pricing_data_class

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class FastBackoff:
    def __init__(self) -> None:
        self.delays = 0
        self.resets = 0

    def next_delay(self) -> float:
        self.delays += 1
        return 0.05

    def reset(self) -> None:
        self.resets += 1


@asynccontextmanager
async def streaming(
    fake: FakeStreamer,
    symbols: list[str],
    *,
    silence: float = 30.0,
    resend: float = 30.0,
    market_open: Callable[[], bool] = lambda: True,
) -> AsyncIterator[tuple[YahooStreamer, list[Tick], list[bool]]]:
    ticks: list[Tick] = []
    states: list[bool] = []
    streamer = YahooStreamer(
        lambda: symbols,
        ticks.append,
        FastBackoff(),
        url=fake.url,
        silence=silence,
        resend=resend,
        market_open=market_open,
        on_connected=states.append,
    )
    task = asyncio.create_task(streamer.run())
    try:
        yield streamer, ticks, states
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def fake() -> AsyncIterator[FakeStreamer]:
    async with FakeStreamer() as server:
        yield server


async def test_subscribes_and_turns_frames_into_ticks(fake: FakeStreamer) -> None:
    symbols = ["AAPL", "MSFT"]
    async with streaming(fake, symbols) as (streamer, ticks, states):
        await eventually(lambda: fake.subscribed == {"AAPL", "MSFT"}, "subscribed")
        assert fake.subscribes == [["AAPL", "MSFT"]]
        assert fake.tick("AAPL", 225.44, day_volume=10, market_hours=1) == 1
        await eventually(lambda: len(ticks) == 1, "one tick")
        assert ticks[0].symbol == "AAPL"
        assert ticks[0].fields["price"] == 225.44
        assert ticks[0].fields["volume"] == 10
        assert streamer.state.connected
        assert streamer.state.ticks == 1
        assert streamer.state.last_tick_at is not None
        assert states == [True]

        symbols[:] = ["AAPL", "NVDA"]  # the set changed: sent at once, not in 15 s
        streamer.resubscribe()
        await eventually(lambda: fake.subscribed == {"AAPL", "NVDA"}, "resubscribed")
        assert fake.unsubscribes == [["MSFT"]]


async def test_resends_the_whole_list_periodically(fake: FakeStreamer) -> None:
    async with streaming(fake, ["AAPL"], resend=0.2):
        await eventually(lambda: len(fake.subscribes) >= 3, "three subscribe messages")
        assert all(s == ["AAPL"] for s in fake.subscribes)
        assert fake.accepted == 1


async def test_reconnects_and_resubscribes_after_the_server_drops_it(
    fake: FakeStreamer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tickerhub_yahoo.streamer")
    async with streaming(fake, ["AAPL"]) as (streamer, ticks, states):
        await eventually(lambda: fake.subscribed == {"AAPL"}, "subscribed")
        fake.tick("AAPL", 1.0)
        await eventually(lambda: len(ticks) == 1, "first tick")
        for _ in range(3):
            await fake.drop()
            await eventually(
                lambda: fake.subscribed == {"AAPL"} and streamer.state.connected,
                "reconnected and subscribed",
            )
        assert fake.accepted == 4
        assert streamer.state.consecutive_failures == 3
        assert "closed" in (streamer.state.last_error or "")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once, not per retry
        fake.tick("AAPL", 2.0)
        await eventually(lambda: len(ticks) == 2, "ticks again")
        assert streamer.state.consecutive_failures == 0
        assert any("receiving again" in r.getMessage() for r in caplog.records)
        assert states[:3] == [True, False, True]


async def test_a_silent_stream_is_reconnected_while_a_market_is_open(fake: FakeStreamer) -> None:
    async with streaming(fake, ["AAPL"], silence=0.3) as (streamer, _, _):
        await eventually(lambda: fake.accepted >= 3, "watchdog reconnects")
        assert "no frame for 0.3s" in (streamer.state.last_error or "")


async def test_a_silent_stream_is_fine_while_every_market_is_closed(fake: FakeStreamer) -> None:
    async with streaming(fake, ["AAPL"], silence=0.2, market_open=lambda: False) as (s, _, _):
        await eventually(lambda: s.state.connected, "connected")
        await asyncio.sleep(1.0)
        assert fake.accepted == 1
        assert s.state.connected


async def test_bad_frames_are_ignored_counted_and_logged_once(
    fake: FakeStreamer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tickerhub_yahoo.streamer")
    whole = pricing_data_class()(id="AAPL", price=2.5, short_name="Apple Inc.").SerializeToString()
    truncated = base64.b64encode(whole[:-3]).decode()
    async with streaming(fake, ["AAPL"]) as (streamer, ticks, _):
        await eventually(lambda: fake.subscribed == {"AAPL"}, "subscribed")
        for _ in range(3):
            fake.send_raw("garbage{")
            fake.send_raw(f'{{"type": "pricing", "message": "{truncated}"}}')
            fake.send_raw(pricing_frame("ZZZZ", 1.0))  # never subscribed
            fake.send_raw(b"\x00\xff binary")
        fake.tick("AAPL", 3.0)
        await eventually(lambda: len(ticks) == 1, "the good tick after the bad frames")
        assert ticks[0].fields["price"] == 3.0
        assert streamer.state.ignored == {
            "not_base64": 6,
            "not_pricing_data": 3,
            "unknown_symbol": 3,
        }
        assert fake.accepted == 1  # bad frames never cost the connection
        logged = [r.getMessage() for r in caplog.records]
        assert len(logged) == 3, logged
        assert all("further" in m for m in logged)


async def test_refused_connections_back_off_and_log_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "tickerhub_yahoo.streamer")
    fake = FakeStreamer()
    await fake.start()
    await fake.stop()  # the port is known, nothing listens
    async with streaming(fake, ["AAPL"]) as (streamer, ticks, _):
        await eventually(lambda: streamer.state.consecutive_failures >= 5, "retries")
        assert not streamer.state.connected
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        await fake.start()
        try:
            await eventually(lambda: streamer.state.connected, "connected once it listens")
            await eventually(lambda: fake.subscribed == {"AAPL"}, "subscribed")
            fake.tick("AAPL", 4.0)
            await eventually(lambda: len(ticks) == 1, "tick")
        finally:
            await fake.stop()
