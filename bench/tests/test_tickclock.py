"""Scenario S's clock (the quote's volume) and its table rows."""

from __future__ import annotations

from tickerhub_bench.report import freshness_rows, verdicts
from tickerhub_bench.stats import Histogram
from tickerhub_bench.tickclock import record_volume_clock, sample_staleness

NOW_NS = 1_800_000_000_000_000_000


def test_latency_is_receipt_minus_the_volume_stamp() -> None:
    hist = Histogram()
    now_us = NOW_NS // 1000
    message = {
        "type": "diff",
        "data": {
            "A": {"price": 1.0, "volume": now_us - 12_000},  # made 12 ms ago
            "B": {"price": 2.0},  # no volume: nothing to measure
            "C": {"volume": None},
        },
    }
    assert record_volume_clock(message, NOW_NS, hist) == 1
    assert hist.count == 1
    assert 11.5 <= hist.mean <= 12.5


def test_staleness_samples_every_held_quote() -> None:
    hist = Histogram()
    now_us = NOW_NS // 1000
    quotes = {"A": {"volume": now_us - 2_000_000}, "B": {"volume": now_us}, "C": {}}
    sample_staleness(quotes, NOW_NS, hist)
    assert hist.count == 2
    assert 990 <= hist.mean <= 1010  # (2000 + 0) / 2 ms


def test_freshness_rows_and_verdict() -> None:
    lat = {"p50_ms": 10.0, "p99_ms": 80.0, "mean_ms": 12.0, "count": 5}
    result = {
        "stream": {"ticks_sent": 100, "latency": lat, "staleness": {"mean_ms": 300.0}},
        "poll": {"latency": {"p50_ms": 100.0, "p99_ms": 300.0}, "staleness": {"mean_ms": 2600.0}},
    }
    rows = {r[0]: r for r in freshness_rows(result)}
    assert rows["update latency p99, ms"][1:3] == ("80.0", "300.0")
    assert rows["age of held values, mean ms"][1:3] == ("300", "2600")
    scenarios = {"S": {"scenario": {}, "ours": result}}
    (line,) = verdicts({"scenarios": scenarios})
    assert "MET" in line
    assert "2600 ms" in line
