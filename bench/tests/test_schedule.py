import pytest

from tickerhub_bench.schedule import RateScheduler, SymbolCycler


def test_scheduler_emits_rate_times_elapsed_without_drift():
    sched = RateScheduler(rate=100, start=10.0)
    total = 0
    t = 10.0
    for _ in range(1000):
        t += 0.0137  # irregular wake-ups
        total += sched.due(t)
    assert total == int(100 * (t - 10.0))


def test_scheduler_low_rate_and_before_start():
    sched = RateScheduler(rate=2, start=5.0)
    assert sched.due(4.0) == 0
    assert sched.due(5.4) == 0
    assert sched.due(5.5) == 1
    assert sched.due(5.9) == 0
    assert sched.due(6.0) == 1
    assert sched.time_of(4) == 7.0


def test_scheduler_caps_bursts_and_counts_what_it_skipped():
    sched = RateScheduler(rate=1000, start=0.0, max_burst=50)
    assert sched.due(1.0) == 50
    assert sched.skipped == 950
    assert sched.due(1.01) == 10


def test_scheduler_rejects_non_positive_rate():
    with pytest.raises(ValueError, match="positive"):
        RateScheduler(rate=0, start=0)


def test_cycler_round_robin_and_distinct_symbols_per_batch():
    cycler = SymbolCycler(["A", "B", "C"])
    assert cycler.take(2) == [["A", "B"]]
    assert cycler.take(2) == [["C", "A"]]
    assert cycler.take(7) == [["B", "C", "A"], ["B", "C", "A"], ["B"]]
    assert cycler.take(0) == []
