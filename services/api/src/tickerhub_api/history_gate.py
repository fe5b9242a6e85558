"""What keeps ``/tickers/{symbol}/history`` from driving unbounded traffic to Yahoo.

The api and the poller ask Yahoo from the same address: if history requests
got the host rate-limited, every quote would go stale. So every outbound
history fetch (cache misses only: identical requests share one fetch, answers
and "not found"s are cached) passes one gate per process:

* at most ``max_concurrent`` fetches at once and ``per_second`` on average
  (a token bucket, burst ``max_concurrent``): past either the request fails
  **fast** with 503 + ``Retry-After``, it does not queue (a queue would hold
  client connections for as long as Yahoo hangs);
* after a 429 nothing is asked for a while (60 s, doubling to 10 min while it
  repeats), and the same is true when the poller saw a 429: both read and
  write the Redis key ``yahoo:rate-limited`` (``YahooRateLimit``; its TTL is
  the hold). A Redis failure there does not block history: the process's own
  hold still applies.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from tickerhub_api.limits import TokenBucket
from tickerhub_core.store import YahooRateLimit

log = logging.getLogger(__name__)

RATE_LIMIT_HOLD = 60.0
RATE_LIMIT_HOLD_CAP = 600.0


class GateClosed(Exception):
    """The fetch was refused before asking Yahoo; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class OutboundGate:
    def __init__(
        self,
        max_concurrent: int,
        per_second: float,
        shared: YahooRateLimit | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_concurrent = max_concurrent
        self._per_second = per_second
        self._bucket = TokenBucket(per_second, max_concurrent, clock)
        self._shared = shared
        self._clock = clock
        self._active = 0
        self._hold_until = 0.0
        self._holds = 0  # consecutive 429s

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One outbound fetch; raises :class:`GateClosed` at once if it may not go."""
        hold = await self._hold_remaining()
        if hold > 0:
            raise GateClosed("Yahoo is rate limiting this host; try again later", hold)
        if self._active >= self.max_concurrent:
            raise GateClosed("too many history requests to Yahoo at once; try again shortly", 1)
        if not self._bucket.take():
            raise GateClosed(
                "history requests to Yahoo are over their rate; try again shortly",
                1 / self._per_second,
            )
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1

    async def rate_limited(self) -> float:
        """Yahoo answered 429: hold every fetch, here and (through Redis) in the poller;
        returns the hold in seconds."""
        hold = min(RATE_LIMIT_HOLD * 2**self._holds, RATE_LIMIT_HOLD_CAP)
        self._holds += 1
        self._hold_until = max(self._hold_until, self._clock() + hold)
        log.warning("Yahoo rate-limited a history request: no history fetches for %.0fs", hold)
        if self._shared is not None:
            try:
                await self._shared.mark(hold)
            except RedisError as exc:
                log.info("could not share Yahoo's rate limit through Redis: %s", exc)
        return hold

    def succeeded(self) -> None:
        self._holds = 0

    async def _hold_remaining(self) -> float:
        local = max(0.0, self._hold_until - self._clock())
        if self._shared is None:
            return local
        try:
            shared = await self._shared.remaining()
        except RedisError:
            shared = 0.0  # Redis trouble must not block history: the local hold still applies
        return max(local, shared)
