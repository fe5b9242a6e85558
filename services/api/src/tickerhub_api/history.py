"""Price history (OHLCV) from Yahoo via ``yfinance.Ticker.history``, cached briefly.

The Yahoo calls (``Ticker.history`` with ``raise_errors=True``, the
status-checked timezone lookup, clearing yfinance's expiry-less ``cache_get``)
and the error classifier live in the shared adapter ``tickerhub_yahoo``; this
module validates the range, maps the classifier's kind to an HTTP status and
caches. Importing it does not import yfinance: the first ``get`` does, in the
event loop thread, before any worker thread (see ``tickerhub_yahoo.client``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from async_lru import alru_cache

from tickerhub_api.history_gate import GateClosed, OutboundGate
from tickerhub_core.models import iso_utc
from tickerhub_yahoo.client import YahooClient
from tickerhub_yahoo.errors import Kind, classify

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

MAX_CACHE_ENTRIES = 256
NEGATIVE_TTL = 300.0


class HistoryError(Exception):
    """A history request failed; ``status_code`` is the HTTP status to answer with."""

    status_code: int = 500
    retry_after: int | None = None  # seconds, sent as Retry-After

    def __init__(
        self, message: str, status_code: int | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
        if retry_after is not None:
            self.retry_after = retry_after


class HistoryBadRequest(HistoryError):
    """Bad interval, start >= end, or a range too long for an intraday interval."""

    status_code = 422


class HistoryNotFound(HistoryError):
    """Unknown symbol, or no data in the range."""

    status_code = 404


class HistoryUpstreamError(HistoryError):
    """Yahoo answered badly (502) or is rate limiting / unreachable (503)."""

    status_code = 502


# Dates outside these are refused (422): Yahoo has nothing before 1900, and near
# datetime's own limits (years 1 and 9999) converting to UTC or subtracting the
# default span overflows (issue 14: a 500 with an OverflowError traceback).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _utc(value: datetime, name: str) -> datetime:
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise HistoryBadRequest(
            f"{name} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
        )
    return moment


def resolve_range(
    start: datetime | None, end: datetime | None, interval: str, now: datetime
) -> tuple[datetime, datetime]:
    """Validate the arguments and fill in defaults; raises :class:`HistoryBadRequest`."""
    if interval not in VALID_INTERVALS:
        raise HistoryBadRequest(
            f"invalid interval {interval!r:.20}; one of {', '.join(VALID_INTERVALS)}"
        )
    end_utc = _utc(end if end is not None else now, "end")
    if start is not None:
        start_utc = _utc(start, "start")
    else:
        start_utc = max(end_utc - DEFAULT_SPAN[interval], EARLIEST)  # no overflow past EARLIEST
    if start_utc >= end_utc:
        raise HistoryBadRequest("start must be before end")
    limit = MAX_SPAN.get(interval)
    if limit is not None and end_utc - start_utc > limit:
        raise HistoryBadRequest(
            f"interval {interval} allows at most {limit.days} days between start and end"
        )
    return start_utc, end_utc


_ERROR_CLASS: dict[Kind, type[HistoryError]] = {
    Kind.NOT_FOUND: HistoryNotFound,
    Kind.INVALID: HistoryBadRequest,
}


def map_error(exc: BaseException) -> HistoryError:
    """Translate what a Yahoo call raised into a :class:`HistoryError` with its status."""
    if isinstance(exc, HistoryError):
        return exc
    failure = classify(exc)
    error_class = _ERROR_CLASS.get(failure.kind, HistoryUpstreamError)
    return error_class(failure.message, failure.kind.http_status)


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


Key = tuple[str, datetime | None, datetime | None, str]


class HistoryService:
    """``get`` OHLCV points for one symbol; identical requests share one fetch and a TTL cache.

    The cache is ``async_lru.alru_cache``: an entry lives ``cache_ttl`` seconds
    from the end of its fetch, at most ``max_entries`` are kept (least recently
    used dropped first), concurrent identical requests await one shielded task
    (one caller going away does not cancel the fetch the others wait for; the
    last one leaving does). Of the failures, Yahoo's definite answers (404 no
    such symbol or no data, 422 invalid) are cached for ``negative_ttl``
    seconds, in a second bounded map; transient ones (503, 502) are not. Every
    fetch that does reach Yahoo passes ``gate`` (``history_gate.py``): global
    caps, and a hold after a 429.
    """

    def __init__(
        self,
        cache_ttl: float = 60.0,
        timeout: float = 10.0,
        session: Any = None,
        max_entries: int = MAX_CACHE_ENTRIES,
        negative_ttl: float = NEGATIVE_TTL,
        gate: OutboundGate | None = None,
    ) -> None:
        self._timeout = timeout
        self._session = session
        self._client: YahooClient | None = None  # built (yfinance loaded) on first use
        self._cached_fetch = alru_cache(maxsize=max_entries, ttl=max(cache_ttl, 0.0))(self._fetch)
        self._negative: OrderedDict[Key, tuple[float, HistoryError]] = OrderedDict()
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._gate = gate or OutboundGate(max_concurrent=4, per_second=2.0)

    async def get(
        self, symbol: str, start: datetime | None, end: datetime | None, interval: str
    ) -> list[dict]:
        resolve_range(start, end, interval, datetime.now(UTC))  # 422 before anything else
        if self._client is None:
            # Here, in the event loop thread: loads yfinance before any worker does.
            self._client = YahooClient(timeout=self._timeout, session=self._session)
        # Keyed by the arguments as given: "no end" (= now) is cached for the TTL too.
        key: Key = (symbol, start, end, interval)
        known = self._known_failure(key)
        if known is not None:
            raise known
        try:
            points = await self._cached_fetch(symbol, start, end, interval)
        except (HistoryNotFound, HistoryBadRequest) as exc:
            self._remember_failure(key, exc)
            raise
        return [dict(p) for p in points]  # callers get copies, the cache keeps its own

    def _known_failure(self, key: Key) -> HistoryError | None:
        entry = self._negative.get(key)
        if entry is None:
            return None
        expires, error = entry
        if time.monotonic() >= expires:
            del self._negative[key]
            return None
        self._negative.move_to_end(key)
        return type(error)(str(error), error.status_code)

    def _remember_failure(self, key: Key, error: HistoryError) -> None:
        if self._negative_ttl <= 0:
            return
        self._negative[key] = (time.monotonic() + self._negative_ttl, error)
        self._negative.move_to_end(key)
        while len(self._negative) > self._max_entries:
            self._negative.popitem(last=False)

    async def _fetch(
        self, symbol: str, start: datetime | None, end: datetime | None, interval: str
    ) -> list[dict]:
        assert self._client is not None
        start_utc, end_utc = resolve_range(start, end, interval, datetime.now(UTC))
        try:
            async with self._gate.slot(), asyncio.timeout(self._timeout):
                frame = await asyncio.to_thread(
                    self._client.history, symbol, start_utc, end_utc, interval
                )
                points = frame_to_points(frame)
        except GateClosed as exc:
            raise HistoryUpstreamError(str(exc), 503, exc.retry_after) from None
        except HistoryError:
            raise
        except Exception as exc:
            error = map_error(exc)
            if classify(exc).kind is Kind.RATE_LIMITED:
                error.retry_after = math.ceil(await self._gate.rate_limited())
            raise error from exc
        self._gate.succeeded()
        if not points:
            raise HistoryNotFound(f"no data for {symbol} in that range")
        return points
