"""When to publish how many updates, and which symbols they touch.

The injector wakes every ``tick`` seconds and publishes the updates that are due
by then (``rate * elapsed`` in total, without drift), in one diff message per
tick when they touch distinct symbols (a diff holds a symbol at most once).
"""

from __future__ import annotations

from collections.abc import Sequence


class RateScheduler:
    def __init__(self, rate: float, start: float, max_burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.start = start
        self.emitted = 0
        self.max_burst = max_burst
        self.skipped = 0  # updates dropped because the injector fell behind by more than a burst

    def due(self, now: float) -> int:
        """How many updates to publish now so that ``rate * (now - start)`` have gone out."""
        target = int(self.rate * max(0.0, now - self.start))
        n = target - self.emitted
        if n <= 0:
            return 0
        self.emitted = target
        if self.max_burst is not None and n > self.max_burst:
            self.skipped += n - self.max_burst
            return self.max_burst
        return n

    def time_of(self, count: int) -> float:
        """The time at which ``count`` updates in total are due."""
        return self.start + count / self.rate


class SymbolCycler:
    """Round-robin over the symbols, so updates spread evenly across them."""

    def __init__(self, symbols: Sequence[str]) -> None:
        if not symbols:
            raise ValueError("no symbols")
        self.symbols = list(symbols)
        self.cursor = 0

    def take(self, n: int) -> list[list[str]]:
        """``n`` updates as batches of distinct symbols (each batch is one diff message)."""
        batches: list[list[str]] = []
        size = len(self.symbols)
        while n > 0:
            k = min(n, size)
            batch = [self.symbols[(self.cursor + i) % size] for i in range(k)]
            self.cursor = (self.cursor + k) % size
            batches.append(batch)
            n -= k
        return batches
