"""Latency statistics: exact percentiles and a mergeable log-bucket histogram.

Client workers record every latency into a :class:`Histogram` (1 % relative
resolution, constant memory), send it to the parent, which merges them. The
exact :func:`percentile` is the reference the histogram is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Bucket i covers (MIN_MS * GROWTH**i, MIN_MS * GROWTH**(i+1)].
MIN_MS = 0.001
GROWTH = 1.01
_LOG_GROWTH = math.log(GROWTH)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100); ``nan`` when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def bucket_of(value_ms: float) -> int:
    if value_ms <= MIN_MS:
        return 0
    return int(math.log(value_ms / MIN_MS) / _LOG_GROWTH)


def bucket_upper(index: int) -> float:
    return MIN_MS * GROWTH ** (index + 1)


class Histogram:
    """Counts of latencies (milliseconds) in log buckets; exact count, max, min, sum."""

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = -math.inf
        self.min = math.inf

    def record(self, value_ms: float) -> None:
        # Negative values (clock granularity) count as zero.
        value_ms = max(value_ms, 0.0)
        index = 0 if value_ms <= MIN_MS else int(math.log(value_ms / MIN_MS) / _LOG_GROWTH)
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total += value_ms
        if value_ms > self.max:
            self.max = value_ms
        if value_ms < self.min:
            self.min = value_ms

    def merge(self, other: Histogram) -> Histogram:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)
        return self

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile, as the upper edge of its bucket (≤ 1 % high), capped at max."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile out of range: {q}")
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(max(bucket_upper(index), self.min), self.max)
        return self.max  # unreachable: counts add up to count

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def summary(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "max_ms": self.max if self.count else math.nan,
            "mean_ms": self.mean,
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "buckets": self.buckets,
            "count": self.count,
            "total": self.total,
            "max": self.max,
            "min": self.min,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Histogram:
        hist = cls()
        hist.buckets = dict(state["buckets"])
        hist.count = state["count"]
        hist.total = state["total"]
        hist.max = state["max"]
        hist.min = state["min"]
        return hist
