"""Periodic news: fetch each ticker's stories, store the unseen ones, publish those."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from redis.exceptions import RedisError

from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.logs import ConditionLog
from tickerhub_core.models import NewsItem
from tickerhub_core.store import NewsStore
from tickerhub_poller.sources.base import QuoteSource, SourceError
from tickerhub_poller.status import SourceHealth

log = logging.getLogger(__name__)


def merge_news(batches: Sequence[Sequence[NewsItem]]) -> list[NewsItem]:
    """One item per id; a story listed under several tickers relates to all of them."""
    merged: dict[str, NewsItem] = {}
    for items in batches:
        for item in items:
            seen = merged.get(item["id"])
            if seen is None:
                merged[item["id"]] = {**item, "tickers": list(item["tickers"])}
            else:
                seen["tickers"] += [t for t in item["tickers"] if t not in seen["tickers"]]
    return sorted(merged.values(), key=lambda i: i["published_at"])


def news_round(
    static: Sequence[str], on_demand: Sequence[str], budget: int, offset: int
) -> tuple[list[str], int]:
    """The symbols one news round asks for, and the next round's ``offset``.

    Every one of ``static`` (TICKERS); of ``on_demand``, what is left of ``budget``,
    taken in turn from ``offset`` so that every symbol's news comes within a few rounds
    however many clients asked for.
    """
    room = max(0, budget - len(static))
    if not on_demand or room == 0:
        return list(static), 0
    if room >= len(on_demand):
        return [*static, *on_demand], 0
    start = offset % len(on_demand)
    taken = [on_demand[(start + i) % len(on_demand)] for i in range(room)]
    return [*static, *taken], (start + room) % len(on_demand)


class NewsPoller:
    def __init__(
        self,
        source: QuoteSource,
        store: NewsStore,
        symbols: Sequence[str],
        interval: float,
        per_ticker: int,
        max_items: int,
        concurrency: int = 4,
        health: SourceHealth | None = None,
        on_demand: Callable[[], Sequence[str]] | None = None,
        max_symbols: int = 50,
    ) -> None:
        self._source = source
        # Told every fetch's outcome (the source status); quiet while it says down.
        self._health = health
        self._store = store
        self._symbols = list(symbols)
        # Symbols clients asked for (the universe's), read each round; NEWS_MAX_SYMBOLS
        # bounds a round's requests, TICKERS first.
        self._on_demand = on_demand
        self._max_symbols = max_symbols
        self._offset = 0
        self._interval = interval
        self._per_ticker = per_ticker
        self._max_items = max_items
        self._limit = asyncio.Semaphore(concurrency)
        self._source_failing = ConditionLog(log, f"{source.name} news")
        self._redis_failing = ConditionLog(log, "redis (news)")
        # The newest items stored (at most max_items): written back if Redis loses them.
        self._kept: list[NewsItem] = []

    async def run(self) -> None:
        while True:
            await self.poll_once()
            honour_cancellation()  # redis-py may have swallowed a cancel (cancellation.py)
            await asyncio.sleep(self._interval)

    async def poll_once(self) -> list[NewsItem]:
        """One round over every ticker; returns the items that were new."""
        symbols = self._symbols
        if self._on_demand is not None:
            static = set(symbols)
            extra = [s for s in self._on_demand() if s not in static]
            symbols, self._offset = news_round(symbols, extra, self._max_symbols, self._offset)
        batches = await asyncio.gather(*(self._fetch(s) for s in symbols))
        items = merge_news(batches)
        try:
            new = await self._store.add(items, self._max_items)
        except (RedisError, OSError) as exc:
            self._redis_failing.failed(f"cannot store news ({exc}); next round retries")
            return []
        self._redis_failing.recovered()
        self._keep(items)
        if new:
            log.info("published %d new news items", len(new))
        return new

    def _keep(self, items: Sequence[NewsItem]) -> None:
        merged = merge_news([self._kept, items])
        self._kept = merged[-self._max_items :] if self._max_items > 0 else []

    async def write_back(self) -> None:
        """Redis came back empty: store the news we hold again (readers are told to reload,
        not sent the items as new). Errors propagate: the caller's retry covers them."""
        if self._kept:
            restored = await self._store.restore(self._kept, self._max_items)
            log.info("wrote %d news items back to redis", restored)

    async def _fetch(self, symbol: str) -> list[NewsItem]:
        async with self._limit:
            try:
                items = await self._source.fetch_news(symbol, self._per_ticker)
            except SourceError as exc:
                if self._health is not None:
                    self._health.record(exc)
                if self._health is None or not self._health.down:
                    self._source_failing.failed(f"{symbol}: {type(exc).__name__}: {exc}")
                return []
        if self._health is not None:
            self._health.record(None)
        self._source_failing.recovered()
        return items
