"""Feeds every quote the poller sees to the bar builder and writes due bars to Redis.

Runs as one task beside the snapshot publisher. A quote is a sample only when it
differs from the symbol's previous one (price, volume or time), so a closed market
polled every few seconds makes no bars. Bars that cannot be written (Redis away)
stay pending and go out, at their latest state, once Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from tickerhub_core import wire
from tickerhub_core.backoff import Backoff
from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.logs import ConditionLog
from tickerhub_core.models import Quote
from tickerhub_core.retry import retry_until_done
from tickerhub_core.store import BarStore
from tickerhub_poller.bars import MAX_BARS, Bar, BarBuilder, day_of, parse_minute
from tickerhub_poller.publisher import REDIS_ERRORS

log = logging.getLogger(__name__)

# How often due bars are looked for: well under the open bar's 1 s publication interval.
TICK_SECONDS = 0.25


class BarPublisher:
    def __init__(
        self,
        store: BarStore,
        builder: BarBuilder,
        symbols: Iterable[str],
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        self._store = store
        self.builder = builder
        self._symbols = list(symbols)
        self._clock = clock
        self._backoff = backoff or Backoff(base=0.2, cap=10.0)
        self._redis_down = ConditionLog(log, "redis (bars)")
        self._last: dict[str, tuple[object, object, object]] = {}
        self._unsent: dict[tuple[str, int], Bar] = {}
        self.published = 0  # bars messages written, for tests

    def observe(self, quote: Quote) -> None:
        """A quote the poller just took (poll or stream tick): one sample if it is new."""
        if quote.get("stale"):
            return  # the last good values again, not a new observation
        symbol = quote["symbol"]
        key = (quote.get("price"), quote.get("volume"), quote.get("market_time"))
        if self._last.get(symbol) == key:
            return
        self._last[symbol] = key
        market_time = quote.get("market_time")
        at = parse_minute(market_time) if market_time else self._clock()
        self.builder.add(symbol, at, quote.get("price"), quote.get("volume"))

    async def load(self) -> None:
        """Adopt the day's bars from Redis, so a restart continues them."""
        raw = await retry_until_done(
            lambda: self._store.load_all(self._symbols),
            errors=REDIS_ERRORS,
            backoff=self._backoff,
            condition=self._redis_down,
            describe=lambda exc: f"cannot load bars ({exc})",
        )
        bars = []
        for item in raw:
            try:
                bars.append(Bar.from_wire(item))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # Written by someone else, or by a different version: not worth a crash.
                log.warning("ignoring a malformed bar in Redis (%s): %.200r", exc, item)
        self.builder.load(bars)
        log.info("loaded %d bars of %d symbols", len(bars), len(self._symbols))

    def discard_unsent(self) -> None:
        """Forget bars a write failed for: taken in an earlier term as leader, they are
        older than what the leader since wrote (a poller leading again, ``lease.py``)."""
        self._unsent.clear()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            await self.flush()

    async def flush(self, *, everything: bool = False) -> None:
        """Write the due bars (``everything``: every changed one, at shutdown)."""
        for bar in self.builder.due(self._clock(), everything=everything):
            self._unsent[(bar.symbol, bar.t)] = bar
        if not self._unsent:
            return
        bars = [
            (b.symbol, b.t, day_of(b.t), wire.dumps(b.to_wire()))
            for b in sorted(self._unsent.values(), key=lambda b: b.t)
        ]
        try:
            await self._store.publish(bars, MAX_BARS)
        except REDIS_ERRORS as exc:
            honour_cancellation()  # redis-py can turn our cancel into a connection error
            self._redis_down.failed(f"bars not written, will retry ({exc})")
            await asyncio.sleep(self._backoff.next_delay())
            return
        self._redis_down.recovered()
        self._backoff.reset()
        self._unsent.clear()
        self.published += 1
