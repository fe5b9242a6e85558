import math
import random

import pytest

from tickerhub_bench.stats import Histogram, percentile


def test_percentile_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 5.0
    assert percentile(list(range(1, 101)), 99) == 99
    assert math.isnan(percentile([], 50))


def test_percentile_rejects_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        percentile([1.0], 101)


def test_histogram_matches_exact_percentiles_within_one_percent():
    rng = random.Random(1)
    values = [rng.lognormvariate(1, 1.2) for _ in range(20_000)]
    hist = Histogram()
    for v in values:
        hist.record(v)
    for q in (50, 90, 99, 99.9):
        exact = percentile(values, q)
        assert exact <= hist.percentile(q) <= exact * 1.0101
    assert hist.percentile(100) == max(values)
    assert hist.count == len(values)
    assert hist.mean == pytest.approx(sum(values) / len(values))


def test_histogram_merge_equals_one_histogram():
    rng = random.Random(2)
    values = [rng.uniform(0, 200) for _ in range(5000)]
    whole, left, right = Histogram(), Histogram(), Histogram()
    for i, v in enumerate(values):
        whole.record(v)
        (left if i % 2 else right).record(v)
    merged = Histogram.from_state(left.to_state()).merge(Histogram.from_state(right.to_state()))
    assert merged.buckets == whole.buckets
    assert merged.count == whole.count
    assert merged.max == whole.max
    assert merged.percentile(99) == whole.percentile(99)


def test_histogram_edge_values():
    hist = Histogram()
    assert math.isnan(hist.percentile(50))
    hist.record(-0.5)  # clock granularity: counted as zero
    hist.record(0.0)
    assert hist.percentile(50) == 0.0
    assert hist.max == 0.0
    summary = hist.summary()
    assert summary["count"] == 2
