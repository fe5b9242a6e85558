"""A deterministic random walk: offline demos, tests and benchmarks.

Each symbol has its own ``random.Random`` seeded from ``(seed, symbol)``, so the
n-th quote of a symbol is the same on every run whatever other symbols are
polled or in which order. With ``volatility=0`` nothing ever changes, which is
how tests check that a restart publishes no spurious diffs. It knows every valid
symbol except ``unknown`` (``SIM_UNKNOWN_SYMBOLS``), which answer :class:`NoDataError`
as Yahoo does for a symbol it does not list: symbols on demand work offline.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tickerhub_core.models import NewsItem, Quote, iso_utc, make_quote
from tickerhub_poller.sources.base import NoDataError, SourceError


@dataclass
class _Walk:
    rng: random.Random
    previous_close: float
    price: float
    open: float
    high: float
    low: float
    volume: int
    market_time: str | None
    news_count: int = 0


class SimulatedSource:
    name = "simulated"

    def __init__(
        self,
        seed: int = 42,
        volatility: float = 0.001,
        max_batch: int = 500,
        unknown: Iterable[str] = (),
    ) -> None:
        self.max_batch = max_batch
        self._unknown = frozenset(unknown)
        self._seed = seed
        self._volatility = volatility
        self._walks: dict[str, _Walk] = {}
        # A fixed start time (midnight UTC today) keeps a flat walk identical across restarts.
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self._start_time = iso_utc(today)

    def _walk(self, symbol: str) -> _Walk:
        walk = self._walks.get(symbol)
        if walk is None:
            rng = random.Random(f"{self._seed}:{symbol}")
            close = round(rng.uniform(20, 500), 2)
            walk = _Walk(
                rng,
                close,
                close,
                close,
                close,
                close,
                rng.randint(10_000, 1_000_000),
                self._start_time,
            )
            self._walks[symbol] = walk
        return walk

    def quote(self, symbol: str) -> Quote:
        """Advance ``symbol``'s walk one step and return its quote."""
        walk = self._walk(symbol)
        if self._volatility > 0:
            step = math.exp(walk.rng.gauss(0.0, self._volatility))
            walk.price = max(0.01, round(walk.price * step, 2))
            walk.high = max(walk.high, walk.price)
            walk.low = min(walk.low, walk.price)
            walk.volume += walk.rng.randint(1, 500)
            walk.market_time = iso_utc(datetime.now(UTC))
        change = round(walk.price - walk.previous_close, 4)
        return make_quote(
            symbol,
            name=f"{symbol} (simulated)",
            price=walk.price,
            change=change,
            change_percent=round(change / walk.previous_close * 100, 4),
            previous_close=walk.previous_close,
            open=walk.open,
            day_high=walk.high,
            day_low=walk.low,
            volume=walk.volume,
            currency="USD",
            exchange="SIM",
            market_state="REGULAR",
            market_time=walk.market_time,
        )

    async def fetch_quotes(self, symbols: Sequence[str]) -> dict[str, Quote | SourceError]:
        return {
            symbol: NoDataError(f"{symbol}: no such symbol (simulated)")
            if symbol in self._unknown
            else self.quote(symbol)
            for symbol in symbols
        }

    async def fetch_news(self, symbol: str, count: int) -> list[NewsItem]:
        walk = self._walk(symbol)
        if self._volatility > 0:
            walk.news_count += 1
        items: list[NewsItem] = []
        for n in range(max(0, walk.news_count - count + 1), walk.news_count + 1):
            items.append(
                {
                    "id": f"sim-{symbol}-{n}",
                    "title": f"{symbol} simulated headline #{n}",
                    "publisher": "TickerHub Simulator",
                    "link": None,
                    # iso_utc returns str | None; it is None only for None input, never here
                    "published_at": iso_utc(datetime.now(UTC)) if n else self._start_time,  # type: ignore[typeddict-item]
                    "tickers": [symbol],
                }
            )
        return items

    async def aclose(self) -> None:
        return None
