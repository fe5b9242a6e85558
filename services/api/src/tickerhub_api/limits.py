"""Per-connection and per-process limits, pure and clock-injected (no I/O, no asyncio).

- :class:`TokenBucket`: at most ``rate`` client messages a second on average,
  ``burst`` at once.
- :class:`MessageLimiter`: a token bucket that also counts the messages it
  rejected; more than ``strikes`` rejections within ``window`` seconds is abuse
  and the connection is closed with 1008.
- :class:`ConnectionSlots`: a counter of open WebSockets with a ceiling.
- :class:`WarningThrottle`: whether a repeated warning may be logged now, and how
  many were held back meanwhile (a flood must not flood the log too).
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]

# Seconds over which rejected messages are counted towards an abuse close.
ABUSE_WINDOW_SECONDS = 10.0


class TokenBucket:
    """Starts full; refills at ``rate`` tokens a second up to ``burst``."""

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self._clock()
        elapsed = now - self._last
        self._last = now
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Verdict(enum.Enum):
    ALLOW = "allow"  # process the message
    REJECT = "reject"  # answer rate_limited, do not process it
    ABUSE = "abuse"  # close the connection with 1008


class MessageLimiter:
    """What to do with each client message on one connection."""

    __slots__ = ("_bucket", "_clock", "_rejected", "rate", "strikes", "window")

    def __init__(
        self,
        rate: float,
        burst: int,
        strikes: int,
        window: float = ABUSE_WINDOW_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        if strikes < 1 or window <= 0:
            raise ValueError("strikes must be >= 1 and window > 0")
        self._bucket = TokenBucket(rate, burst, clock)
        self._clock = clock
        self.rate = rate
        self.strikes = strikes
        self.window = window
        # Times of recent rejections; never longer than ``strikes`` + 1. Made on the
        # first rejection: an empty deque costs ~600 bytes, on every connection.
        self._rejected: deque[float] | None = None

    def check(self) -> Verdict:
        if self._bucket.take():
            return Verdict.ALLOW
        now = self._clock()
        rejected = self._rejected
        if rejected is None:
            rejected = self._rejected = deque()
        rejected.append(now)
        while rejected and now - rejected[0] > self.window:
            rejected.popleft()
        if len(rejected) > self.strikes:
            return Verdict.ABUSE
        return Verdict.REJECT


class ConnectionSlots:
    """Open WebSockets in this process (``/ws/prices`` and ``/ws/news`` together)."""

    __slots__ = ("in_use", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def acquire(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        if self.in_use > 0:
            self.in_use -= 1


class WarningThrottle:
    """At most one log line per kind of event every ``interval`` seconds.

    ``hit(kind)`` returns ``None`` while the line is held back, else how many
    events of that kind happened since the last line (this one included).
    """

    __slots__ = ("_clock", "_counts", "_last", "interval")

    def __init__(self, interval: float = 60.0, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def hit(self, kind: str) -> int | None:
        count = self._counts.get(kind, 0) + 1
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._counts[kind] = count
            return None
        self._last[kind] = now
        self._counts[kind] = 0
        return count
