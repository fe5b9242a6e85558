"""The 1-minute bar builder (pure): OHLCV, finality, late corrections, bounds."""

from __future__ import annotations

from tickerhub_poller.bars import MAX_BARS, Bar, BarBuilder, iso_minute

T0 = 1_764_163_800  # 2025-11-26T13:30:00Z, a minute start


def wire(bars: list[Bar]) -> list[dict]:
    return [b.to_wire() for b in bars]


def test_one_minute_of_samples_makes_one_bar_with_its_ohlcv() -> None:
    b = BarBuilder(grace=5, min_interval=1)
    b.add("AAPL", T0 - 10, 99.0, 1_000)  # the minute before: sets the volume baseline
    for offset, price, volume in [
        (1, 100.0, 1_100),
        (20, 103.5, 1_250),
        (40, 98.25, 1_400),
        (59.9, 101.0, 1_460),
    ]:
        b.add("AAPL", T0 + offset, price, volume)
    bar = b.bars("AAPL")[-1]
    assert bar.to_wire() == {
        "symbol": "AAPL",
        "t": "2025-11-26T13:30:00Z",
        "o": 100.0,
        "h": 103.5,
        "l": 98.25,
        "c": 101.0,
        "v": 460,
        "n": 4,
        "final": False,
        "revision": 0,
    }
    # [start, end): a sample at exactly T0 + 60 opens the next bar.
    b.add("AAPL", T0 + 60, 102.0, 1_470)
    assert [x.t for x in b.bars("AAPL")] == [T0 - 60, T0, T0 + 60]
    assert b.bars("AAPL")[-1].o == 102.0
    assert b.bars("AAPL")[-1].v == 10


def test_volume_never_negative_and_first_sample_counts_nothing() -> None:
    b = BarBuilder()
    b.add("X", T0 + 1, 10.0, 5_000)
    assert b.bars("X")[0].v == 0
    b.add("X", T0 + 2, 10.0, 4_000)  # the source went backwards (new session, correction)
    b.add("X", T0 + 3, 10.0, 4_100)
    assert b.bars("X")[0].v == 100
    b.add("X", T0 + 4, 10.0, None)  # no volume known: nothing added, baseline kept
    b.add("X", T0 + 5, 10.0, 4_150)
    assert b.bars("X")[0].v == 150
    assert b.bars("X")[0].n == 5


def test_no_samples_no_bar_and_a_sample_without_price_makes_none() -> None:
    b = BarBuilder()
    b.add("X", T0 + 1, 10.0, 1)
    b.add("X", T0 + 180 + 1, 11.0, 2)  # two empty minutes in between
    b.add("X", T0 + 300, None, 3)
    assert [x.t for x in b.bars("X")] == [T0, T0 + 180]
    assert b.bars("Y") == []


def test_open_bar_published_at_most_once_per_interval_then_final_once() -> None:
    b = BarBuilder(grace=5, min_interval=1)
    b.add("X", T0 + 1, 10.0, 1)
    assert wire(b.due(T0 + 1.0)) == [{**b.bars("X")[0].to_wire()}]
    assert b.bars("X")[0].revision == 1
    assert not b.bars("X")[0].final
    b.add("X", T0 + 1.2, 10.5, 2)
    assert b.due(T0 + 1.5) == []  # changed, but published less than a second ago
    assert [x.c for x in b.due(T0 + 2.0)] == [10.5]
    assert b.due(T0 + 10) == []  # unchanged: nothing
    assert b.due(T0 + 64.9) == []  # minute over, grace not yet
    final = b.due(T0 + 65)
    assert [(x.final, x.revision, x.c) for x in final] == [(True, 3, 10.5)]
    assert b.due(T0 + 100) == []  # final is published once


def test_late_tick_corrects_a_final_bar_with_a_higher_revision() -> None:
    b = BarBuilder(grace=2, min_interval=1)
    b.add("X", T0 + 10, 10.0, 100)
    b.add("X", T0 + 50, 12.0, 200)
    b.add("X", T0 + 61, 13.0, 300)
    b.due(T0 + 70)
    first = b.bars("X")[0]
    assert first.final
    assert first.revision == 1
    b.add("X", T0 + 30, 9.0, 250)  # arrives late, belongs to the final minute
    corrected = b.due(T0 + 71)
    assert [(x.t, x.final, x.revision, x.o, x.h, x.low, x.c, x.n, x.v) for x in corrected] == [
        (T0, True, 2, 10.0, 12.0, 9.0, 12.0, 3, 100)
    ]


def test_late_sample_before_the_first_one_becomes_the_open() -> None:
    b = BarBuilder()
    b.add("X", T0 + 30, 10.0, None)
    b.add("X", T0 + 5, 8.0, None)
    bar = b.bars("X")[0]
    assert (bar.o, bar.c, bar.low) == (8.0, 10.0, 8.0)


def test_only_the_newest_day_is_kept_and_old_days_are_refused() -> None:
    b = BarBuilder()
    b.add("X", T0, 10.0, None)
    b.add("X", T0 + 86_400, 11.0, None)  # next UTC day
    assert [x.t for x in b.bars("X")] == [T0 + 86_400]
    b.add("X", T0 + 60, 12.0, None)  # yesterday: ignored
    assert [x.t for x in b.bars("X")] == [T0 + 86_400]


def test_at_most_max_bars_per_symbol() -> None:
    b = BarBuilder()
    midnight = T0 - T0 % 86_400
    for i in range(MAX_BARS):
        b.add("X", midnight + 60 * i, 1.0, None)
    assert len(b.bars("X")) == MAX_BARS


def test_restart_continues_loaded_bars_with_rising_revisions() -> None:
    before = BarBuilder(grace=5)
    before.add("X", T0 + 1, 10.0, 1)
    before.due(T0 + 2)
    stored = [Bar.from_wire(b.to_wire()) for b in before.bars("X")]
    after = BarBuilder(grace=5)
    after.load(stored)
    after.add("X", T0 + 30, 11.0, 5)
    (bar,) = after.due(T0 + 31)
    assert (bar.o, bar.c, bar.n, bar.revision, bar.t) == (10.0, 11.0, 2, 2, T0)
    assert iso_minute(bar.t) == "2025-11-26T13:30:00Z"
    # An open bar loaded but never touched again is still finalised.
    (final,) = after.due(T0 + 70)
    assert final.final
    assert final.revision == 3


async def test_publisher_load_skips_malformed_bars_and_dedupes_samples() -> None:
    from tickerhub_poller.bar_publisher import BarPublisher

    good = BarBuilder()
    good.add("X", T0 + 1, 10.0, 1)
    stored = [{"symbol": "X", "t": "not a time"}, good.bars("X")[0].to_wire(), {"nope": 1}]

    class Stored:  # what BarStore.load_all would return from a Redis holding these
        async def load_all(self, symbols: list[str]) -> list[dict]:
            return stored

    publisher = BarPublisher(Stored(), BarBuilder(), ["X"], clock=lambda: T0 + 30)  # type: ignore[arg-type]
    await publisher.load()
    assert [b.t for b in publisher.builder.bars("X")] == [T0]
    quote = {"symbol": "X", "price": 11.0, "volume": 5, "market_time": "2025-11-26T13:30:20Z"}
    publisher.observe(quote)  # type: ignore[arg-type]
    publisher.observe(quote)  # type: ignore[arg-type]  # the same quote again: no new sample
    publisher.observe({**quote, "stale": True})  # type: ignore[typeddict-item]  # stale: none
    assert publisher.builder.bars("X")[0].n == 2
