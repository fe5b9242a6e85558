"""Price history (OHLCV) from Yahoo via ``yfinance.Ticker.history``, cached briefly.

Errors: ``history`` is called with ``raise_errors=True`` (deprecated in yfinance
1.x in favour of the global ``yf.config.debug.hide_exceptions = False``, which we
do not flip for the whole process), so a missing symbol or range raises
``YFPricesMissingError`` / ``YFTzMissingError`` instead of returning an empty
frame and a log line. ``history`` first looks the symbol's timezone up, and that
lookup swallows HTTP errors whatever the flag (a 5xx there would read as "unknown
symbol"); so on the first request for a symbol we fetch the timezone ourselves
(the same ``v8/finance/chart/{s}?range=1d`` call yfinance makes) with the status
checked, and store it in yfinance's timezone cache where ``history`` finds it.

yfinance's ``YfData.cache_get`` (an expiry-less lru cache, which ``history`` uses
for ranges ending in the past, errors included) is cleared after every fetch:
this module's TTL cache is the only cache.
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tickerhub_core.models import iso_utc

VALID_INTERVALS: tuple[str, ...] = (
    "1m",
    "2m",
    "5m",
    "15m",
    "30m",
    "60m",
    "90m",
    "1h",
    "1d",
    "5d",
    "1wk",
    "1mo",
    "3mo",
)

# Longest start..end span Yahoo serves per intraday interval (yfinance uses the
# same numbers for period="max"); 60m is the same bar as 1h.
MAX_SPAN: dict[str, timedelta] = {
    "1m": timedelta(days=8),
    "2m": timedelta(days=60),
    "5m": timedelta(days=60),
    "15m": timedelta(days=60),
    "30m": timedelta(days=60),
    "90m": timedelta(days=60),
    "60m": timedelta(days=730),
    "1h": timedelta(days=730),
}

# Span used when the caller gives no start.
DEFAULT_SPAN: dict[str, timedelta] = {
    "1m": timedelta(days=5),
    "2m": timedelta(days=5),
    "5m": timedelta(days=5),
    "15m": timedelta(days=30),
    "30m": timedelta(days=30),
    "60m": timedelta(days=30),
    "90m": timedelta(days=30),
    "1h": timedelta(days=30),
    "1d": timedelta(days=31),
    "5d": timedelta(days=365),
    "1wk": timedelta(days=365),
    "1mo": timedelta(days=5 * 365),
    "3mo": timedelta(days=10 * 365),
}

CHART_URL = "https://query2.finance.yahoo.com/v8/finance/chart/{symbol}"
MAX_CACHE_ENTRIES = 256


class HistoryError(Exception):
    """A history request failed; ``status_code`` is the HTTP status to answer with."""

    status_code: int = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code


class HistoryBadRequest(HistoryError):
    """Bad interval, start >= end, or a range too long for an intraday interval."""

    status_code = 422


class HistoryNotFound(HistoryError):
    """Unknown symbol, or no data in the range."""

    status_code = 404


class HistoryUpstreamError(HistoryError):
    """Yahoo answered badly (502) or is rate limiting / unreachable (503)."""

    status_code = 502


def _unavailable(message: str) -> HistoryUpstreamError:
    return HistoryUpstreamError(message, 503)


def _bad_answer(message: str) -> HistoryUpstreamError:
    return HistoryUpstreamError(message, 502)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def resolve_range(
    start: datetime | None, end: datetime | None, interval: str, now: datetime
) -> tuple[datetime, datetime]:
    """Validate the arguments and fill in defaults; raises :class:`HistoryBadRequest`."""
    if interval not in VALID_INTERVALS:
        raise HistoryBadRequest(
            f"invalid interval {interval!r:.20}; one of {', '.join(VALID_INTERVALS)}"
        )
    end_utc = _utc(end) if end is not None else _utc(now)
    start_utc = _utc(start) if start is not None else end_utc - DEFAULT_SPAN[interval]
    if start_utc >= end_utc:
        raise HistoryBadRequest("start must be before end")
    limit = MAX_SPAN.get(interval)
    if limit is not None and end_utc - start_utc > limit:
        raise HistoryBadRequest(
            f"interval {interval} allows at most {limit.days} days between start and end"
        )
    return start_utc, end_utc


def _http_error_status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def map_error(exc: BaseException) -> HistoryError:
    """Translate yfinance / requests / curl_cffi exceptions into a :class:`HistoryError`."""
    if isinstance(exc, HistoryError):
        return exc
    from yfinance.exceptions import (
        YFDataException,
        YFException,
        YFInvalidPeriodError,
        YFRateLimitError,
        YFTickerMissingError,
    )

    if isinstance(exc, YFRateLimitError):
        return _unavailable("Yahoo is rate limiting us; try again later")
    if isinstance(exc, YFTickerMissingError):  # prices / timezone missing
        return HistoryNotFound(str(exc))
    if isinstance(exc, YFInvalidPeriodError):
        return HistoryBadRequest(str(exc))
    status = _http_error_status(exc)
    if status is not None:
        if status == 429:
            return _unavailable("Yahoo is rate limiting us; try again later")
        if status == 404:
            return HistoryNotFound("unknown symbol")
        return _bad_answer(f"Yahoo answered HTTP {status}")
    if isinstance(exc, YFDataException) and "CURRENTLY DOWN" in str(exc):
        return _unavailable("Yahoo Finance is down")
    if isinstance(exc, TimeoutError):
        return _unavailable("Yahoo did not answer in time")
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"JSONDecodeError", "InvalidJSONError"}:
        return _bad_answer("Yahoo answered with something that is not JSON")
    if names & {"Timeout", "ConnectionError", "ChunkedEncodingError", "RemoteDisconnected"}:
        return _unavailable(f"Yahoo unreachable: {type(exc).__name__}")
    if isinstance(exc, OSError):
        return _unavailable(f"Yahoo unreachable: {type(exc).__name__}")
    if isinstance(exc, YFException | KeyError | TypeError | ValueError | IndexError):
        return _bad_answer(f"unexpected answer from Yahoo: {type(exc).__name__}")
    return _bad_answer(f"history failed: {type(exc).__name__}")


def frame_to_points(frame: Any) -> list[dict]:
    """DataFrame from ``Ticker.history`` -> list of points; rows with a NaN price dropped."""
    points: list[dict] = []
    if frame is None or getattr(frame, "empty", True):
        return points
    for stamp, row in frame.iterrows():
        try:
            prices = [float(row[c]) for c in ("Open", "High", "Low", "Close")]
        except (KeyError, TypeError, ValueError):
            continue
        if not all(math.isfinite(p) for p in prices):
            continue
        raw_volume = row.get("Volume")
        try:
            volume = float(raw_volume)
        except (TypeError, ValueError):
            volume = math.nan
        moment = stamp.to_pydatetime() if hasattr(stamp, "to_pydatetime") else stamp
        points.append(
            {
                "date": iso_utc(moment),
                "open": prices[0],
                "high": prices[1],
                "low": prices[2],
                "close": prices[3],
                "volume": int(volume) if math.isfinite(volume) else 0,
            }
        )
    return points


class HistoryService:
    """``get`` OHLCV points for one symbol; identical requests share one fetch and a TTL cache."""

    def __init__(
        self,
        cache_ttl: float = 60.0,
        timeout: float = 10.0,
        session: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = cache_ttl
        self._timeout = timeout
        self._session = session
        self._clock = clock
        self._cache: OrderedDict[tuple, tuple[float, list[dict]]] = OrderedDict()
        self._inflight: dict[tuple, asyncio.Task[list[dict]]] = {}
        # raise_errors=True is deprecated (but honoured) in yfinance 1.x; silence
        # just that warning (catch_warnings is not thread-safe, the workers are threads).
        warnings.filterwarnings(
            "ignore", message="'raise_errors' deprecated", category=DeprecationWarning
        )

    async def get(
        self, symbol: str, start: datetime | None, end: datetime | None, interval: str
    ) -> list[dict]:
        start_utc, end_utc = resolve_range(start, end, interval, datetime.now(UTC))
        key = (
            symbol,
            start.isoformat() if start is not None else None,
            end.isoformat() if end is not None else None,
            interval,
        )
        cached = self._cache.get(key)
        if cached is not None:
            stored_at, points = cached
            if self._clock() - stored_at < self._ttl:
                self._cache.move_to_end(key)
                return [dict(p) for p in points]
            del self._cache[key]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, symbol, start_utc, end_utc, interval))
            self._inflight[key] = task
            task.add_done_callback(lambda t, key=key: self._finished(key, t))
        # shield: one caller going away must not cancel the fetch the others wait for.
        points = await asyncio.shield(task)
        return [dict(p) for p in points]

    def _finished(self, key: tuple, task: asyncio.Task[list[dict]]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" noise if every waiter left

    async def _load(
        self, key: tuple, symbol: str, start: datetime, end: datetime, interval: str
    ) -> list[dict]:
        try:
            async with asyncio.timeout(self._timeout):
                points = await asyncio.to_thread(self._fetch, symbol, start, end, interval)
        except HistoryError:
            raise
        except Exception as exc:
            raise map_error(exc) from exc
        if not points:
            raise HistoryNotFound(f"no data for {symbol} in that range")
        if self._ttl > 0:
            self._cache[key] = (self._clock(), points)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return points

    # -- worker thread ---------------------------------------------------------

    def _fetch(self, symbol: str, start: datetime, end: datetime, interval: str) -> list[dict]:
        import yfinance as yf
        from yfinance.data import YfData

        data = YfData(session=self._session) if self._session is not None else YfData()
        try:
            self._ensure_timezone(data, symbol)
            # yfinance's own session, or Ticker builds (and never closes) a new one.
            ticker = yf.Ticker(symbol, session=self._session or data._session)
            frame = ticker.history(
                start=start,
                end=end,
                interval=interval,
                auto_adjust=True,
                actions=False,
                timeout=self._timeout,
                raise_errors=True,
            )
        finally:
            YfData.cache_get.cache_clear()
        return frame_to_points(frame)

    def _ensure_timezone(self, data: Any, symbol: str) -> None:
        from yfinance import cache as yf_cache

        tz_cache = yf_cache.get_tz_cache()
        if tz_cache.lookup(symbol):
            return
        response = data.get(
            CHART_URL.format(symbol=symbol),
            params={"range": "1d", "interval": "1d"},
            timeout=self._timeout,
        )
        status = response.status_code
        text = response.text or ""
        if status == 429:
            raise _unavailable("Yahoo is rate limiting us; try again later")
        if "Will be right back" in text:
            raise _unavailable("Yahoo Finance is down")
        try:
            payload = response.json()
        except ValueError:
            raise _bad_answer(f"Yahoo answered HTTP {status} without JSON") from None
        chart = payload.get("chart") if isinstance(payload, dict) else None
        if not isinstance(chart, dict):
            raise _bad_answer(f"Yahoo answered HTTP {status} without a chart")
        if chart.get("error") or status == 404:
            raise HistoryNotFound(f"unknown symbol {symbol}")
        if status >= 400:
            raise _bad_answer(f"Yahoo answered HTTP {status}")
        try:
            tz = chart["result"][0]["meta"]["exchangeTimezoneName"]
        except (KeyError, IndexError, TypeError):
            raise HistoryNotFound(f"no data for {symbol}") from None
        if not isinstance(tz, str) or not tz:
            raise HistoryNotFound(f"no data for {symbol}")
        tz_cache.store(symbol, tz)
