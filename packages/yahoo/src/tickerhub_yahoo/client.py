"""Every yfinance call TickerHub makes, private ones included, in one place.

yfinance 1.7 internals used here (the version is bounded below 1.8 in
``pyproject.toml``; ``tests/test_internals.py`` fails loudly if they change):

* ``yfinance.data.YfData``: the process-wide singleton holding the session,
  cookie and crumb; ``YfData(session=s)`` installs ``s`` for the whole process.
  ``get_raw_json`` (the batch v7 quote call), ``get`` (the timezone lookup, status
  checked by us), ``cache_get`` (an expiry-less ``lru_cache`` that ``history``
  uses for past ranges, cleared after every history fetch) and ``_session``.
* ``yfinance.cache.get_tz_cache()``: ``lookup``/``store`` of a symbol's timezone.
* ``yfinance.cache``'s ``_TzCacheManager._tz_cache``, ``_CookieCacheManager._Cookie_cache``
  and ``_ISINCacheManager._isin_cache``: replaced by in-memory caches (see
  :func:`use_memory_caches`), and the ``lookup``/``store`` shapes yfinance expects.
* the texts of yfinance's repeating warnings, folded by :mod:`tickerhub_yahoo.logfold`
  (installed by :func:`load`; each successful call here ends an episode).

Import once, before any worker thread: importing yfinance lazily from two
threads at once can fail with ``ImportError: cannot import name 'YfData' from
partially initialized module 'yfinance.data'`` (the poller's quote and news
threads did). :func:`load` imports it under a lock; the services call it from
the event loop thread before handing work to threads (the poller at start-up,
the api on the first history request, so an api that never serves history
never loads yfinance and pandas). Importing this module imports neither.
"""

from __future__ import annotations

import pickle
import threading
import warnings
from collections.abc import Sequence
from datetime import datetime
from types import ModuleType
from typing import Any

from tickerhub_yahoo import logfold
from tickerhub_yahoo.errors import Kind, YahooError, status_failure

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
CHART_URL = "https://query2.finance.yahoo.com/v8/finance/chart/{symbol}"

_load_lock = threading.Lock()
_yfinance: ModuleType | None = None


def load() -> ModuleType:
    """Import yfinance (and the submodules used here) once, thread-safely; return it."""
    global _yfinance
    if _yfinance is not None:
        return _yfinance
    with _load_lock:
        if _yfinance is None:
            import yfinance
            import yfinance.cache
            import yfinance.data
            import yfinance.exceptions

            # raise_errors=True (history) is deprecated but honoured in 1.x; we do
            # not flip the process-wide hide_exceptions instead. Filtered here, once:
            # catch_warnings is not thread-safe and the calls run in threads.
            warnings.filterwarnings(
                "ignore", message="'raise_errors' deprecated", category=DeprecationWarning
            )
            # yfinance's repeating "continuing without crumb" warnings: ours say it.
            logfold.install()
            _yfinance = yfinance
    return _yfinance


class MemoryCache:
    """A thread-safe in-process stand-in for one of yfinance's SQLite key/value caches.

    yfinance keeps timezones, its cookie and ISIN lookups in SQLite files under
    the user's cache directory, one connection per thread, each switching the
    file to WAL as it opens. Worker threads opening them at once can fail with
    ``sqlite3.OperationalError: database is locked`` (a history request answered
    502), and a read-only container logs that the cache cannot be created. A
    dict under a lock has neither problem; what it loses is one timezone lookup
    per symbol, and one cookie fetch, per process start.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Any] = {}

    def lookup(self, key: str) -> Any:
        with self._lock:
            return self._items.get(key)

    def store(self, key: str, value: Any) -> None:
        with self._lock:
            if value is None:
                self._items.pop(key, None)
            else:
                self._items[key] = value


class MemoryCookieCache(MemoryCache):
    """yfinance's cookie cache shape: ``lookup`` answers ``{"cookie", "age"}``."""

    def lookup(self, key: str) -> Any:
        entry = super().lookup(key)
        if entry is None:
            return None
        stored, blob = entry
        # A copy, as the SQLite cache hands out (it pickles): the caller may mutate it.
        return {"cookie": pickle.loads(blob), "age": datetime.now() - stored}

    def store(self, key: str, value: Any) -> None:
        blob = None if value is None else (datetime.now(), pickle.dumps(value))
        super().store(key, blob)


def use_memory_caches(yf: ModuleType) -> None:
    """Put :class:`MemoryCache` in place of yfinance's SQLite caches (idempotent)."""
    cache = yf.cache
    with _load_lock:
        if not isinstance(cache._TzCacheManager._tz_cache, MemoryCache):
            cache._TzCacheManager._tz_cache = MemoryCache()
        if not isinstance(cache._CookieCacheManager._Cookie_cache, MemoryCookieCache):
            cache._CookieCacheManager._Cookie_cache = MemoryCookieCache()
        if not isinstance(cache._ISINCacheManager._isin_cache, MemoryCache):
            cache._ISINCacheManager._isin_cache = MemoryCache()


class YahooClient:
    """Blocking Yahoo calls (run them in a worker thread), through yfinance.

    ``session``: a ``requests``/``curl_cffi`` session to install in yfinance's
    singleton (tests pass the offline seam's); ``None`` keeps yfinance's own.
    Construct it in the event loop thread: it loads yfinance.
    """

    def __init__(self, timeout: float = 10.0, session: Any = None) -> None:
        self.timeout = timeout
        self.session = session
        self._yf = load()
        use_memory_caches(self._yf)

    def _data(self) -> Any:
        data_cls = self._yf.data.YfData
        # Re-passing the session each time keeps it installed even if something
        # else in the process replaced yfinance's singleton session.
        return data_cls(session=self.session) if self.session is not None else data_cls()

    def _ticker(self, symbol: str, data: Any) -> Any:
        # yfinance's own session, or Ticker builds (and never closes) a new one.
        return self._yf.Ticker(symbol, session=self.session or data._session)

    def quote_json(self, symbols: Sequence[str], fields: str) -> Any:
        """The raw ``v7/finance/quote`` answer for ``symbols``: one request per call."""
        params = {
            "symbols": ",".join(symbols),
            "formatted": "false",
            "fields": fields,
            "lang": "en-US",
            "region": "US",
        }
        # get_raw_json goes through YfData.get (cookie + crumb), never the
        # expiry-less cache_get, and raises HTTPError for 4xx/5xx.
        answer = self._data().get_raw_json(QUOTE_URL, params=params, timeout=self.timeout)
        logfold.fold().succeeded()
        return answer

    def news(self, symbol: str, count: int) -> Any:
        """``Ticker.get_news`` items for ``symbol`` (a fresh Ticker: it caches news forever)."""
        ticker = self._ticker(symbol, self._data())
        items = ticker.get_news(count=count, tab="news")
        logfold.fold().succeeded()
        return items

    def history(self, symbol: str, start: datetime, end: datetime, interval: str) -> Any:
        """``Ticker.history`` as a DataFrame; raises instead of returning an empty frame."""
        data = self._data()
        try:
            self._ensure_timezone(data, symbol)
            frame = self._ticker(symbol, data).history(
                start=start,
                end=end,
                interval=interval,
                auto_adjust=True,
                actions=False,
                timeout=self.timeout,
                raise_errors=True,
            )
            logfold.fold().succeeded()
            return frame
        finally:
            # history caches past ranges (errors included) without expiry.
            self._yf.data.YfData.cache_get.cache_clear()

    def _ensure_timezone(self, data: Any, symbol: str) -> None:
        """Look the symbol's timezone up ourselves, status checked, into yfinance's cache.

        ``history`` does this lookup itself but swallows HTTP errors whatever the
        flags (a 5xx would read as "unknown symbol"); finding it cached, it skips it.
        """
        tz_cache = self._yf.cache.get_tz_cache()
        if tz_cache.lookup(symbol):
            return
        response = data.get(
            CHART_URL.format(symbol=symbol),
            params={"range": "1d", "interval": "1d"},
            timeout=self.timeout,
        )
        status = response.status_code
        text = response.text or ""
        if "Will be right back" in text:
            raise YahooError(Kind.UNAVAILABLE, "Yahoo Finance is down ('Will be right back')")
        if status >= 400 and status != 404:  # 404 comes with Yahoo's JSON error body
            failure = status_failure(status)
            raise YahooError(failure.kind, failure.message)
        try:
            payload = response.json()
        except ValueError:
            raise YahooError(Kind.MALFORMED, f"Yahoo answered HTTP {status} without JSON") from None
        chart = payload.get("chart") if isinstance(payload, dict) else None
        if not isinstance(chart, dict):
            raise YahooError(Kind.MALFORMED, f"Yahoo answered HTTP {status} without a chart")
        if chart.get("error") or status == 404:
            raise YahooError(Kind.NOT_FOUND, f"unknown symbol {symbol}")
        try:
            tz = chart["result"][0]["meta"]["exchangeTimezoneName"]
        except (KeyError, IndexError, TypeError):
            raise YahooError(Kind.NOT_FOUND, f"no data for {symbol}") from None
        if not isinstance(tz, str) or not tz:
            raise YahooError(Kind.NOT_FOUND, f"no data for {symbol}")
        tz_cache.store(symbol, tz)
