"""Pure parts of the push stream: tick merging and ordering, the cadence, the in-flight merge."""

from __future__ import annotations

import asyncio
import time

import pytest

from tickerhub_core.models import QUOTE_DATA_FIELDS, make_quote
from tickerhub_poller.cadence import Cadence
from tickerhub_poller.live import LiveQuotes, market_open, merge_tick, reconcile_poll
from tickerhub_poller.settings import PollerSettings
from tickerhub_poller.snapshot import Snapshot
from tickerhub_yahoo.pricing import Tick, tick_from_pricing
from tickerhub_yahoo.streamer import pricing_data_class

T0 = 1_764_081_000_000  # 2025-11-25T14:30:00Z


def tick(symbol: str = "AAPL", price: float = 1.0, ms: int = T0, **fields: object) -> Tick:
    return Tick(symbol, ms, {"price": price, **fields})


def test_stream_fields_are_quote_fields() -> None:
    full = pricing_data_class()(
        id="AAPL", price=1.0, time=T0, currency="USD", exchange="NMS", market_hours=1,
        change_percent=1.0, day_volume=5, day_high=2.0, day_low=0.5, change=0.1,
        short_name="Apple", open_price=0.9, previous_close=0.9,
    )  # fmt: skip
    mapped = tick_from_pricing(full)
    assert mapped is not None
    assert set(mapped.fields) == set(QUOTE_DATA_FIELDS)  # every field, nothing else


def test_merge_keeps_what_the_tick_lacks_and_clears_stale() -> None:
    last = {**make_quote("AAPL", name="Apple", price=1.0, volume=10), "seq": 7, "stale": True}
    merged = merge_tick(last, tick(price=2.0))  # type: ignore[arg-type]
    assert merged["price"] == 2.0
    assert merged["name"] == "Apple"
    assert merged["volume"] == 10
    assert merged["stale"] is False
    assert "seq" not in merged
    fresh = merge_tick(None, tick("NEW", 3.0))
    assert set(fresh) == {"symbol", "stale", *QUOTE_DATA_FIELDS}
    assert fresh["price"] == 3.0


def test_ticks_older_than_what_the_hub_holds_are_dropped() -> None:
    snapshot = Snapshot()
    notified: list[int] = []
    live = LiveQuotes(snapshot, lambda: notified.append(1))
    assert live.apply(tick(price=1.0, ms=T0 + 500))
    assert not live.apply(tick(price=0.5, ms=T0 + 400))  # older than the last tick
    assert live.apply(tick(price=2.0, ms=T0 + 900))
    assert live.apply(tick(price=2.5, ms=0))  # undated: applied
    # A poll moved market_time to the next second: a tick from this second is old.
    snapshot.update({**make_quote("AAPL", price=3.0, market_time="2025-11-25T14:30:01Z")})
    assert not live.apply(tick(price=9.9, ms=T0 + 950))
    assert live.apply(tick(price=3.1, ms=T0 + 1001))  # same second as the poll: not older
    assert (live.applied, live.dropped_old, len(notified)) == (4, 2, 4)
    quote = snapshot.get("AAPL")
    assert quote is not None
    assert quote["price"] == 3.1


def test_ticks_during_a_publish_merge_over_the_one_in_flight() -> None:
    snapshot = Snapshot()
    live = LiveQuotes(snapshot, lambda: None)
    live.apply(tick(price=1.0, ms=T0, day_high=5.0))
    first = snapshot.prepare()
    assert first is not None
    snapshot.commit(first)
    live.apply(tick(price=2.0, ms=T0 + 1, day_high=6.0))
    in_flight = snapshot.prepare()  # the publisher awaits Redis with this
    assert in_flight is not None
    live.apply(tick(price=2.1, ms=T0 + 2))  # no day_high in this frame
    live.apply(tick(price=2.2, ms=T0 + 3))  # latest wins
    snapshot.commit(in_flight)
    following = snapshot.prepare()
    assert following is not None
    assert following.quotes["AAPL"]["price"] == 2.2
    assert following.quotes["AAPL"]["day_high"] == 6.0  # not put back to 5.0
    assert b"day_high" not in following.message


def test_market_open() -> None:
    closed = make_quote("A", market_state="CLOSED")
    assert not market_open([closed, {**closed, "market_state": "POSTPOST"}])
    assert market_open([closed, make_quote("B", market_state="REGULAR")])
    assert market_open([None])  # never quoted: may be open
    assert not market_open([])


def test_stream_setting_defaults_follow_the_source() -> None:
    assert PollerSettings(_env_file=None).stream_enabled
    assert not PollerSettings(_env_file=None, source="simulated").stream_enabled
    assert PollerSettings(_env_file=None, source="simulated", stream="ON").stream_enabled
    assert not PollerSettings(_env_file=None, stream="off").stream_enabled
    assert PollerSettings(_env_file=None, stream="").stream is None
    with pytest.raises(ValueError, match="stream"):
        PollerSettings(_env_file=None, stream="maybe")


def test_cadence_intervals() -> None:
    fixed = Cadence(5.0)
    fixed.set_streaming(True)
    assert fixed.interval() == 5.0  # no stream configured: the old behaviour
    cadence = Cadence(5.0, 60.0)
    assert cadence.interval() == 5.0
    cadence.set_streaming(True)
    assert cadence.interval() == 60.0
    cadence.set_streaming(False)
    assert cadence.interval() == 5.0


async def test_stream_down_wakes_a_reconcile_sleep_at_poll_freq() -> None:
    cadence = Cadence(0.2, 30.0)
    cadence.set_streaming(True)
    started = time.monotonic()
    sleeper = asyncio.create_task(cadence.sleep(cadence.interval()))
    await asyncio.sleep(0.05)
    cadence.set_streaming(False)
    await asyncio.wait_for(sleeper, 10)  # not 30 s
    assert time.monotonic() - started >= 0.2  # still a poll_freq after it began
    # A sleep that began long enough ago ends at once; short sleeps are never cut.
    cadence.set_streaming(True)
    short = asyncio.create_task(cadence.sleep(0.1))
    cadence.set_streaming(False)
    await asyncio.wait_for(short, 10)


def test_a_poll_older_than_the_last_tick_keeps_the_tick_prices() -> None:
    ticked = {
        **make_quote(
            "AAPL", name="Apple", price=2.0, volume=20, market_time="2025-11-25T14:30:05Z"
        ),
        "stale": False,
    }
    older = {
        **make_quote("AAPL", name="Apple Inc.", price=1.0, volume=10, open=0.9,
                     market_time="2025-11-25T14:30:01Z"),
        "stale": False,
    }  # fmt: skip
    merged = reconcile_poll(ticked, older)  # type: ignore[arg-type]
    assert (merged["price"], merged["volume"], merged["market_time"]) == (
        2.0,
        20,
        ticked["market_time"],
    )
    assert (merged["name"], merged["open"]) == ("Apple Inc.", 0.9)  # what only the poll has
    newer = {**older, "market_time": "2025-11-25T14:30:06Z"}
    assert reconcile_poll(ticked, newer) is newer  # type: ignore[arg-type]
    assert reconcile_poll(None, older) is older  # type: ignore[arg-type]
    undated = {**older, "market_time": None}
    assert reconcile_poll(ticked, undated) is undated  # type: ignore[arg-type]
