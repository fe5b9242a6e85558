"""Exponential backoff with full jitter (pure: no sleeping here)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of ``base * factor**n`` capped at ``cap``, each drawn uniformly from [0, d].

    Full jitter spreads retries from many clients (or many batches) apart so
    they do not hit Yahoo or Redis in lock-step after an outage.
    """

    base: float = 0.5
    cap: float = 60.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * self.factor**self.attempts)
        self.attempts += 1
        # Never zero: a zero delay would retry in a tight loop.
        return max(ceiling * self.rng.random(), min(self.base, ceiling) / 10)

    def reset(self) -> None:
        self.attempts = 0

    @property
    def failing(self) -> bool:
        return self.attempts > 0
