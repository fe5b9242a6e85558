"""Yahoo Finance through yfinance: one ``v7/finance/quote`` request per batch.

Why this call (see ``docs/yfinance.md``): ``Ticker.info`` costs three requests
per ticker and ``history`` one per ticker without ``marketState``; yfinance's
internal ``YfData().get_raw_json`` on ``v7/finance/quote?symbols=A,B,C`` answers a
whole batch in one request with every field a quote needs, and still gets
yfinance's cookie and crumb handling. It is private API: the mapping below is
defensive, and every failure becomes a :class:`SourceError`.

Blocking yfinance calls run in a worker thread (``asyncio.to_thread``) under an
overall deadline. A thread cannot be cancelled: after a deadline the request
finishes (or hits the HTTP timeout, the same number of seconds) in the
background and its answer is dropped.

The yfinance calls themselves (private ones included) and the error
classifier live in the shared adapter ``tickerhub_yahoo``; this module maps
Yahoo's answers to quotes and news and the classifier's kinds to
:class:`SourceError` classes. Constructing the source imports yfinance (once,
in the calling thread, before any worker thread: see ``tickerhub_yahoo.client``)
but touches neither the network nor yfinance's global state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tickerhub_core.models import NewsItem, Quote, iso_utc, make_quote
from tickerhub_core.symbols import InvalidSymbolError, is_valid_symbol, normalize_symbol
from tickerhub_poller.sources.base import (
    MalformedResponseError,
    NoDataError,
    RateLimitedError,
    SourceError,
    SourceTimeoutError,
    SourceUnavailableError,
)
from tickerhub_yahoo.client import YahooClient
from tickerhub_yahoo.errors import Kind, classify

log = logging.getLogger(__name__)

# Only what we map; Yahoo answers with fewer bytes when asked for fewer fields.
QUOTE_FIELDS = (
    "symbol,shortName,longName,currency,exchange,fullExchangeName,marketState,"
    "regularMarketPrice,regularMarketChange,regularMarketChangePercent,"
    "regularMarketPreviousClose,regularMarketOpen,regularMarketDayHigh,"
    "regularMarketDayLow,regularMarketVolume,regularMarketTime"
)

T = TypeVar("T")

# What each kind of failure is to the poller (the backoff depends on the class).
# An unexpected exception type retries with backoff like an outage; the batcher
# logs it.
_SOURCE_ERROR: dict[Kind, type[SourceError]] = {
    Kind.RATE_LIMITED: RateLimitedError,
    Kind.UNAVAILABLE: SourceUnavailableError,
    Kind.NOT_FOUND: NoDataError,
    Kind.INVALID: MalformedResponseError,
    Kind.MALFORMED: MalformedResponseError,
    Kind.UNEXPECTED: SourceUnavailableError,
}


def map_error(exc: BaseException) -> SourceError:
    """Translate whatever a Yahoo call raised into a :class:`SourceError`."""
    if isinstance(exc, SourceError):
        return exc
    failure = classify(exc)
    return _SOURCE_ERROR[failure.kind](failure.message)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _market_time(value: Any) -> str | None:
    seconds = _number(value)
    if seconds is None or seconds <= 0:
        return None
    try:
        return iso_utc(seconds)
    except (OverflowError, OSError, ValueError):
        return None


def quote_from_yahoo(symbol: str, item: dict[str, Any]) -> Quote | None:
    """Map one ``quoteResponse.result`` entry; ``None`` when it has no usable price."""
    price = _number(item.get("regularMarketPrice"))
    if price is None:
        return None
    return make_quote(
        symbol,
        name=_text(item.get("shortName")) or _text(item.get("longName")),
        price=price,
        change=_number(item.get("regularMarketChange")),
        change_percent=_number(item.get("regularMarketChangePercent")),
        previous_close=_number(item.get("regularMarketPreviousClose")),
        open=_number(item.get("regularMarketOpen")),
        day_high=_number(item.get("regularMarketDayHigh")),
        day_low=_number(item.get("regularMarketDayLow")),
        volume=_integer(item.get("regularMarketVolume")),
        currency=_text(item.get("currency")),
        exchange=_text(item.get("fullExchangeName")) or _text(item.get("exchange")),
        market_state=_text(item.get("marketState")),
        market_time=_market_time(item.get("regularMarketTime")),
    )


def parse_quote_response(symbols: Sequence[str], payload: Any) -> dict[str, Quote | SourceError]:
    """Turn a v7 quote answer into the result dict for ``symbols`` (already canonical)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("quoteResponse"), dict):
        raise MalformedResponseError("answer has no 'quoteResponse' object")
    body = payload["quoteResponse"]
    error = body.get("error")
    if error:
        raise MalformedResponseError(f"Yahoo reported an error: {error!r:.200}")
    items = body.get("result")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise MalformedResponseError("'quoteResponse.result' is not a list")
    by_symbol: dict[str, dict[str, Any]] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("symbol"), str):
            by_symbol.setdefault(item["symbol"].upper(), item)
    result: dict[str, Quote | SourceError] = {}
    for symbol in symbols:
        item = by_symbol.get(symbol)
        if item is None:
            result[symbol] = NoDataError(f"{symbol}: not in Yahoo's answer")
            continue
        quote = quote_from_yahoo(symbol, item)
        result[symbol] = quote if quote is not None else NoDataError(f"{symbol}: no price")
    return result


def news_from_yahoo(symbol: str, article: Any) -> NewsItem | None:
    """Map one ``tickerStream.stream`` entry; ``None`` when id, title or date is missing."""
    if not isinstance(article, dict):
        return None
    content = article.get("content")
    if not isinstance(content, dict):
        return None
    news_id = _text(article.get("id")) or _text(content.get("id"))
    title = _text(content.get("title"))
    try:
        published = iso_utc(content.get("pubDate")) if _text(content.get("pubDate")) else None
    except (ValueError, TypeError, OverflowError):
        published = None
    if not (news_id and title and published):
        return None

    def url_of(key: str) -> str | None:
        holder = content.get(key)
        return _text(holder.get("url")) if isinstance(holder, dict) else None

    provider = content.get("provider")
    publisher = _text(provider.get("displayName")) if isinstance(provider, dict) else None
    tickers = [symbol]
    finance = content.get("finance")
    related = finance.get("stockTickers") if isinstance(finance, dict) else None
    for entry in related if isinstance(related, list) else ():
        raw = entry.get("symbol") if isinstance(entry, dict) else entry
        try:
            canonical = normalize_symbol(raw)
        except InvalidSymbolError:
            continue
        if canonical not in tickers:
            tickers.append(canonical)
    return NewsItem(
        id=news_id,
        title=title,
        publisher=publisher,
        link=url_of("canonicalUrl") or url_of("clickThroughUrl"),
        published_at=published,
        tickers=tickers,
    )


class YFinanceSource:
    """The :class:`~tickerhub_poller.sources.base.QuoteSource` backed by Yahoo via yfinance."""

    name = "yfinance"

    def __init__(
        self,
        max_batch: int = 50,
        timeout: float = 10.0,
        session: Any = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.max_batch = max_batch
        self.timeout = timeout
        self._client = YahooClient(timeout=timeout, session=session)
        self._closed = False
        self._inflight: set[asyncio.Future[Any]] = set()

    # -- plumbing --------------------------------------------------------------

    async def _run(self, what: str, fn: Callable[[], T]) -> T:
        if self._closed:
            raise SourceUnavailableError("source is closed")
        future = asyncio.ensure_future(asyncio.to_thread(fn))
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)
        started = time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            future.add_done_callback(_swallow)
            raise SourceTimeoutError(f"{what}: no answer within {self.timeout:g}s") from None
        except SourceError:
            raise
        except Exception as exc:
            error = map_error(exc)
            log.debug(
                "yfinance %s failed after %.2fs: %r -> %s",
                what,
                time.monotonic() - started,
                exc,
                type(error).__name__,
            )
            raise error from exc

    # -- quotes ------------------------------------------------------------------

    async def fetch_quotes(self, symbols: Sequence[str]) -> dict[str, Quote | SourceError]:
        result: dict[str, Quote | SourceError] = {}
        wanted: list[str] = []
        for symbol in symbols:
            if isinstance(symbol, str) and is_valid_symbol(symbol):
                if symbol not in wanted:
                    wanted.append(symbol)
            else:
                # Never send it to Yahoo; report it like a symbol Yahoo does not know.
                result[str(symbol)] = NoDataError(f"not a valid symbol: {symbol!r:.40}")
        # The batcher sends at most max_batch; split defensively if a caller did not.
        for start in range(0, len(wanted), self.max_batch):
            batch = wanted[start : start + self.max_batch]
            payload = await self._run(
                "quote", functools.partial(self._client.quote_json, batch, QUOTE_FIELDS)
            )
            try:
                result.update(parse_quote_response(batch, payload))
            except SourceError:
                raise
            except Exception as exc:  # a shape we did not foresee
                raise MalformedResponseError(f"unexpected quote answer: {exc!r:.200}") from exc
        return result

    # -- news ----------------------------------------------------------------------

    async def fetch_news(self, symbol: str, count: int) -> list[NewsItem]:
        if not isinstance(symbol, str) or not is_valid_symbol(symbol):
            raise NoDataError(f"not a valid symbol: {symbol!r:.40}")
        count = max(1, int(count))
        articles = await self._run("news", lambda: self._client.news(symbol, count))
        if not isinstance(articles, list):
            raise MalformedResponseError("news answer is not a list")
        items: list[NewsItem] = []
        seen: set[str] = set()
        for article in articles:
            item = news_from_yahoo(symbol, article)
            if item is None:
                log.debug("skipping news item without id/title/pubDate for %s", symbol)
                continue
            if item["id"] in seen:
                continue
            seen.add(item["id"])
            items.append(item)
        return items[:count]

    # -- lifecycle -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Refuse new calls and wait (up to ``timeout``) for worker threads still running."""
        self._closed = True
        pending = list(self._inflight)
        if pending:
            await asyncio.wait(pending, timeout=self.timeout)


def _swallow(future: asyncio.Future[Any]) -> None:
    """Retrieve a dropped call's exception so asyncio does not log it as unhandled."""
    if not future.cancelled():
        future.exception()
