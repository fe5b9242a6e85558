"""Readiness that a flood cannot starve, and how REST words a Redis failure.

``/readyz`` is what an orchestrator restarts the api on, so it must not say
"Redis down" because the api is busy. Two things keep it honest:

* it talks to Redis through a client of its own (a pool of two connections),
  never the shared pool that ``/news``, ``/ws/news`` and the pub/sub reader
  use, so a flood of those cannot take its connection;
* its Redis answer is cached for ``READY_CACHE_SECONDS`` and concurrent probes
  share one check, so a ``/readyz`` flood costs Redis one round trip a second
  and cannot starve anything else either.

:class:`RedisFailures` turns a Redis error in a REST request into the answer:
``PoolExhaustedError`` (every pooled connection busy for ``REDIS_POOL_TIMEOUT``)
is overload, ``503`` with ``Retry-After``; anything else is an outage. Neither
body carries the exception text (it names the internal Redis address); the
log does: overload at most once a minute, an outage once per condition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tickerhub_core.logs import ConditionLog
from tickerhub_core.redis_client import PoolExhaustedError

log = logging.getLogger(__name__)

READY_PING_TIMEOUT = 2.0
READY_CACHE_SECONDS = 1.0
OVERLOAD_RETRY_AFTER = 1  # seconds, in the Retry-After header


@dataclass(frozen=True, slots=True)
class RedisCheck:
    ok: bool
    producer_beat: int | None  # epoch ms of the producer's heartbeat, None if expired/absent


class ReadinessProbe:
    """``check()``: Redis answering, and the producer's heartbeat; cached, single-flight."""

    def __init__(
        self,
        redis: Redis,
        heartbeat_key: str,
        cache_seconds: float = READY_CACHE_SECONDS,
        timeout: float = READY_PING_TIMEOUT,
    ) -> None:
        self._redis = redis
        self._heartbeat_key = heartbeat_key
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._last: RedisCheck | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    async def check(self) -> RedisCheck:
        loop = asyncio.get_running_loop()
        async with self._lock:  # concurrent probes wait for the one check under way
            if self._last is not None and loop.time() - self._checked_at < self._cache_seconds:
                return self._last
            self._last = await self._ask()
            self._checked_at = loop.time()
            return self._last

    async def _ask(self) -> RedisCheck:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.ping()
                    pipe.get(self._heartbeat_key)
                    pong, raw_beat = await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            return RedisCheck(False, None)
        try:
            beat = int(raw_beat) if raw_beat is not None else None
        except ValueError:
            beat = None
        return RedisCheck(bool(pong), beat)


@dataclass(frozen=True, slots=True)
class Failure:
    status_code: int
    detail: str
    headers: dict[str, str]


class EveryWarning:
    """A warning logged at most once every ``every`` seconds, with how many were held back.

    Overload comes in bursts where failures and successes interleave, so the
    start/recovered pair of ``ConditionLog`` would log every few requests.
    """

    def __init__(
        self,
        what: str,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._every = every
        self._clock = clock
        self._last: float | None = None
        self._held = 0

    def warn(self, detail: str) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._every:
            self._held += 1
            return
        more = f" ({self._held} more since the last warning)" if self._held else ""
        log.warning("%s: %s%s", self._what, detail, more)
        self._last = now
        self._held = 0


class RedisFailures:
    """Words a Redis error for a REST client and logs it (overload at most once a minute,
    an outage once per condition)."""

    def __init__(self) -> None:
        self._overload = EveryWarning("REST overloaded: Redis connection pool exhausted")
        self._outage = ConditionLog(log, "REST: Redis unreachable")

    def answer(self, what: str, exc: RedisError) -> Failure:
        if isinstance(exc, PoolExhaustedError):
            self._overload.warn(str(exc))
            return Failure(
                503,
                f"{what} unavailable: the api is overloaded, try again shortly",
                {"Retry-After": str(OVERLOAD_RETRY_AFTER)},
            )
        self._outage.failed(f"{type(exc).__name__}: {exc}")
        return Failure(503, f"{what} unavailable: Redis is unreachable", {})

    def succeeded(self) -> None:
        self._outage.recovered()
