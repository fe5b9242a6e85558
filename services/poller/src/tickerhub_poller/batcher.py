"""Coalesce per-ticker requests into batched source calls.

Each ticker has its own task (so a ticker's cadence, backoff and staleness are
its own), but Yahoo answers up to ``max_batch`` symbols in one HTTP request. The
batcher gathers the requests that arrive within ``window`` seconds (or until a
batch is full) and makes one call for them: 500 tickers cost 10 requests a cycle
at the default batch size, not 500.

Failures are handled per batch: a failed batch's symbols all get one delay
(exponential, with jitter) so they retry together and stay one batch. A rate
limit pauses every batch, because Yahoo throttles the client as a whole.

A failure streak belongs to the symbols that fail, not to the batcher: another
batch succeeding meanwhile neither resets the failing symbols' backoff (or they
would retry at the first step forever) nor ends the logged condition (or every
failed cycle would log "failed" and "recovered" again). The condition is over
when no symbol's last batch failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from tickerhub_core.backoff import Backoff
from tickerhub_core.logs import ConditionLog
from tickerhub_core.metrics import SLOW_BUCKETS, Buckets
from tickerhub_core.models import Quote
from tickerhub_poller.sources.base import (
    MalformedResponseError,
    NoDataError,
    QuoteSource,
    RateLimitedError,
    SourceError,
    SourceTimeoutError,
    SourceUnavailableError,
)
from tickerhub_poller.status import SourceHealth

log = logging.getLogger(__name__)


class BatchFailedError(SourceError):
    """A whole batch failed; ``retry_after`` is the delay shared by its symbols."""

    def __init__(self, cause: SourceError, retry_after: float) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.retry_after = retry_after


class QuoteBatcher:
    def __init__(
        self,
        source: QuoteSource,
        batch_size: int = 50,
        window: float = 0.05,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_rate_limited: Callable[[float], None] | None = None,
        health: SourceHealth | None = None,
    ) -> None:
        self._source = source
        # Told every request's outcome (the source status); while it says the whole
        # source is down, that condition's one log line covers this batcher's too.
        self._health = health
        # Told the pause (seconds) after each rate limit: the poller shares it through Redis.
        self._on_rate_limited = on_rate_limited
        self._batch_size = max(1, min(batch_size, source.max_batch))
        self._window = window
        self._backoff = backoff or Backoff(base=1.0, cap=300.0)
        self._clock = clock
        self._waiting: dict[str, list[asyncio.Future[Quote]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self._condition = ConditionLog(log, f"{source.name} quotes")
        # symbol -> consecutive failed batches it was in (absent: its last batch succeeded)
        self._streaks: dict[str, int] = {}
        self.calls = 0  # source calls made (batches), for tests and metrics
        # For /metrics: source calls by outcome (see outcome()) and their durations.
        self.outcomes: dict[str, int] = {}
        self.durations = Buckets(SLOW_BUCKETS)

    async def get(self, symbol: str) -> Quote:
        """The next quote for ``symbol``; raises SourceError (often BatchFailedError)."""
        future: asyncio.Future[Quote] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(symbol, []).append(future)
        if len(self._waiting) >= self._batch_size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            symbols = list(self._waiting)[: self._batch_size]
            batch = {s: self._waiting.pop(s) for s in symbols}
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[str, list[asyncio.Future[Quote]]]) -> None:
        delay = self._paused_until - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        self.calls += 1
        started = time.monotonic()
        try:
            results = await self._source.fetch_quotes(list(batch))
        except SourceError as exc:
            self._count(exc, started)
            self._fail(batch, exc)
            return
        except Exception as exc:  # a source bug must not kill the poller
            log.exception("%s source raised unexpectedly", self._source.name)
            error = MalformedResponseError(repr(exc))
            self._count(error, started)
            self._fail(batch, error)
            return
        self._count(None, started)
        for symbol in batch:
            self._streaks.pop(symbol, None)
        if not self._streaks:
            self._condition.recovered()
        for symbol, futures in batch.items():
            result = results.get(symbol)
            if result is None:
                result = SourceUnavailableError(f"no answer for {symbol}")
            for future in futures:
                if future.done():
                    continue
                if isinstance(result, SourceError):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _count(self, error: SourceError | None, started: float) -> None:
        key = outcome(error)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        self.durations.observe(time.monotonic() - started)
        if self._health is not None:
            self._health.record(error)

    @property
    def source_down(self) -> bool:
        """The whole source is down (its one log line covers per-symbol lines too)."""
        return self._health is not None and self._health.down

    @property
    def failing_symbols(self) -> int:
        """Symbols whose last batch failed (the source status shows it)."""
        return len(self._streaks)

    def _fail(self, batch: dict[str, list[asyncio.Future[Quote]]], exc: SourceError) -> None:
        # The batch's longest streak sets its step (symbols retry together).
        streak = max((self._streaks.get(s, 0) for s in batch), default=0)
        self._backoff.attempts = streak
        retry_after = self._backoff.next_delay()
        for symbol in batch:
            self._streaks[symbol] = streak + 1
        if isinstance(exc, RateLimitedError):
            self._paused_until = max(self._paused_until, self._clock() + retry_after)
            if self._on_rate_limited is not None:
                self._on_rate_limited(retry_after)
        if self._health is None or not self._health.down:
            self._condition.failed(
                f"{type(exc).__name__} for a batch of {len(batch)} ({exc}); "
                f"retrying in {retry_after:.1f}s"
            )
        error = BatchFailedError(exc, retry_after)
        for futures in batch.values():
            for future in futures:
                if not future.done():
                    future.set_exception(error)

    async def aclose(self) -> None:
        """Cancel the batches in flight and forget the symbols waiting for one.

        The batcher stays usable: a poller that loses its lease closes it, and polls
        through it again if it leads again. So the timer is forgotten too: a cancelled
        one left in place would keep :meth:`get` from ever starting another, and every
        quote request after it would wait forever (seen as a poller that took the lease
        back after a Sentinel failover and never published again).
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                future.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def outcome(error: SourceError | None) -> str:
    """A source call's outcome label: ok, rate_limited, timeout, unavailable, malformed,
    no_data (the whole batch unknown)."""
    if error is None:
        return "ok"
    if isinstance(error, RateLimitedError):
        return "rate_limited"
    if isinstance(error, SourceTimeoutError):
        return "timeout"
    if isinstance(error, MalformedResponseError):
        return "malformed"
    if isinstance(error, NoDataError):
        return "no_data"
    return "unavailable"
