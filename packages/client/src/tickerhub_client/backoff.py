"""Reconnect delays: exponential, capped, with jitter (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before reconnect ``attempt`` (1, 2, …): ``initial * factor**(attempt-1)``,
    capped at ``maximum``, then drawn uniformly from its upper half.

    The jitter spreads the clients of an api process that restarted over time, so they do
    not all come back in the same instant; the lower bound keeps even an unlucky draw
    from turning into a retry storm.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1:
            raise ValueError("need 0 < initial <= maximum and factor >= 1")

    def delay(self, attempt: int, random_: Callable[[], float] = random.random) -> float:
        ceiling = min(self.maximum, self.initial * self.factor ** min(max(attempt - 1, 0), 64))
        return ceiling / 2 + random_() * ceiling / 2
