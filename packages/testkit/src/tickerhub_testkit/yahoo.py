"""An offline Yahoo Finance for tests: yfinance's own code runs, only the wire is fake.

:class:`FakeYahoo` owns a ``requests.Session`` whose transport adapter answers
every ``https://`` request from recorded bodies, routed by host and path:

=============  ==================================================  ======================
route          matches                                             default answer
=============  ==================================================  ======================
``cookie``     ``fc.yahoo.com``                                    404 + ``Set-Cookie: A3``
``crumb``      ``query1|query2.finance.yahoo.com/v1/test/getcrumb`` ``getcrumb.txt``
``quote``      ``*/v7/finance/quote``                              ``quote_v7_AAPL-MSFT.json`` (+)
``chart``      ``*/v8/finance/chart/{symbol}``                     ``chart_v8_AAPL_1d.json`` (+)
``news``       ``finance.yahoo.com/xhr/ncp``                       ``ncp_latestNews_AAPL.json``
``summary``    ``*/v10/finance/quoteSummary/{symbol}``             404 (not recorded)
``search``     ``*/v1/finance/search``                             404 (not recorded)
``consent``    ``guce.yahoo.com``, ``consent.yahoo.com``           200, a page without a form
``other``      anything else                                       404
=============  ==================================================  ======================

(+) per-request variants built from that recording (see below).

A test can replace any route's answer (:meth:`FakeYahoo.set`): a status, a body,
an exception to raise (``requests.exceptions.ReadTimeout`` ...), a delay (longer
than the request's timeout means a ``ReadTimeout`` after ``timeout`` seconds,
as a real socket would), for every request or only the next ``times`` ones.
Every request is recorded and counted per route (:attr:`FakeYahoo.counts`,
:attr:`FakeYahoo.requests`).

Where the recorded shapes come from (none of them was invented):

* ``quote_v7_AAPL-MSFT.json``: a real ``v7/finance/quote?symbols=AAPL,MSFT``
  answer captured by the yfinance-rs project
  (github.com/gramistella/yfinance-rs, ``tests/fixtures/quote_v7_AAPL-MSFT.json``),
  verbatim. yfinance 1.7 reads the same envelope in
  ``scrapers/quote.py`` (``result["quoteResponse"]["result"]``).
  :func:`quote_item` derives any other symbol from the AAPL entry (name, price
  and volume changed deterministically); :func:`quote_item_without_price` is
  the short entry Yahoo sends for a symbol it knows but has no price for
  (the AAPL entry with every market field removed). Unknown symbols are simply
  absent from ``result``, as Yahoo does.
* ``chart_v8_AAPL_1d.json``: a real ``v8/finance/chart/AAPL?interval=1d`` answer
  from the same project (``tests/fixtures/history_chart_AAPL.json``), cut to its
  last 10 bars (2025-08-12 .. 2025-08-25, after the 2025-08-11 dividend, so the
  ``events`` block was dropped; ``meta`` is verbatim). The chart route serves it
  for any known symbol (``meta.symbol`` replaced), keeping only bars inside
  ``period1``/``period2``; no bar in range gives Yahoo's empty-range shape
  (``"indicators": {"quote": [{}], "adjclose": [{}]}`` and no ``timestamp``),
  which yfinance's ``history`` turns into ``YFPricesMissingError``.
* ``chart_v8_not_found.json``: Yahoo's HTTP 404 body for an unknown symbol, as
  quoted in yfinance issues and handled in ``scrapers/history.py``
  (``data["chart"]["error"]["description"]``).
* ``ncp_latestNews_AAPL.json``: a real ``finance.yahoo.com/xhr/ncp?queryRef=
  latestNews`` answer from yfinance-rs (``tests/fixtures/news_latestNews_AAPL.json``),
  cut to 3 of its stream items (thumbnail resolutions cut to one each).
  yfinance's ``get_news`` reads ``data.tickerStream.stream``.
  :func:`news_item` builds variants; related tickers go in
  ``content.finance.stockTickers`` (``[{"symbol": ...}]``), the shape other
  Yahoo clients read there (none of the 3 recorded items carries one).
* ``getcrumb.txt``: a crumb is an 11-character plain-text token
  (``data.py`` ``_get_crumb_basic`` reads ``response.text``).
* ``will_be_right_back.html``: Yahoo's outage page; yfinance only looks for the
  phrase "Will be right back" in it (``base.py`` ``get_news``,
  ``scrapers/history.py``). The markup around the phrase is a reconstruction.
* The cookie answer: ``fc.yahoo.com`` replies 404 with an ``A3`` cookie on
  ``.yahoo.com``; yfinance ignores the status and keeps the cookie
  (``data.py`` ``_get_cookie_basic`` / ``_save_cookie_curlCffi``).

:func:`isolated_yfinance` resets yfinance's process-wide state (the ``YfData``
singleton, the ``cache_get`` lru cache, the on-disk timezone/cookie caches,
``YfConfig``) before and after a test, and sets ``YF_DISABLE_CURL_CFFI=1`` so
yfinance's own error classes are ``requests``' ones, like the seam's session.
"""

from __future__ import annotations

import copy
import http.client
import io
import json
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

os.environ.setdefault("YF_DISABLE_CURL_CFFI", "1")

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.response import HTTPResponse

CRUMB = "Xg1mUBk2ZXb"
A3_COOKIE = (
    "A3=d=AQABBOTgqWgCEFakeCookieForTestsOnly&S=AQAAAtest; "
    "Expires=Wed, 26 Aug 2099 10:00:00 GMT; Max-Age=31557600; Domain=.yahoo.com; "
    "Path=/; SameSite=None; Secure; HttpOnly"
)

ROUTES = ("cookie", "crumb", "quote", "chart", "news", "summary", "search", "consent", "other")


# ---------------------------------------------------------------------------
# Recorded bodies and generated variants
# ---------------------------------------------------------------------------


def _resource(name: str) -> str:
    return resources.files("tickerhub_testkit").joinpath("yahoo_responses", name).read_text("utf-8")


@cache
def _recorded_json(name: str) -> Any:
    return json.loads(_resource(name))


def recorded(name: str) -> Any:
    """A deep copy of a recorded JSON body, e.g. ``recorded("chart_v8_AAPL_1d.json")``."""
    return copy.deepcopy(_recorded_json(name))


def will_be_right_back_html() -> str:
    return _resource("will_be_right_back.html")


def _quote_template(symbol: str) -> dict[str, Any]:
    items = {
        item["symbol"]: item
        for item in _recorded_json("quote_v7_AAPL-MSFT.json")["quoteResponse"]["result"]
    }
    return copy.deepcopy(items.get(symbol, items["AAPL"]))


def _factor(symbol: str) -> float:
    """A deterministic number in [0.5, 1.5) per symbol, so variants differ."""
    return 0.5 + (zlib.crc32(symbol.encode()) % 1000) / 1000


def quote_item(symbol: str, **overrides: Any) -> dict[str, Any]:
    """One ``quoteResponse.result`` entry for ``symbol``.

    AAPL and MSFT are the recorded entries verbatim; any other symbol is the
    AAPL entry with names, prices and volume scaled by a per-symbol factor.
    ``overrides`` replace (or, with value ``...``, remove) fields.
    """
    item = _quote_template(symbol)
    if symbol not in ("AAPL", "MSFT"):
        f = _factor(symbol)
        for key in (
            "regularMarketPrice",
            "regularMarketChange",
            "regularMarketPreviousClose",
            "regularMarketOpen",
            "regularMarketDayHigh",
            "regularMarketDayLow",
            "bid",
            "ask",
        ):
            item[key] = round(item[key] * f, 4)
        item["regularMarketVolume"] = int(item["regularMarketVolume"] * f)
        item["regularMarketDayRange"] = (
            f"{item['regularMarketDayLow']} - {item['regularMarketDayHigh']}"
        )
        item["shortName"] = f"{symbol} Corp."
        item["longName"] = f"{symbol} Corporation"
        item["displayName"] = symbol
        item["messageBoardId"] = f"finmb_{zlib.crc32(symbol.encode())}"
        item["symbol"] = symbol
    for key, value in overrides.items():
        if value is ...:
            item.pop(key, None)
        else:
            item[key] = value
    return item


_IDENTITY_FIELDS = (
    "language",
    "region",
    "quoteType",
    "typeDisp",
    "quoteSourceName",
    "triggerable",
    "customPriceAlertConfidence",
    "exchange",
    "market",
    "esgPopulated",
    "tradeable",
    "cryptoTradeable",
    "symbol",
)


def quote_item_without_price(symbol: str) -> dict[str, Any]:
    """The short entry Yahoo returns for a symbol it knows but cannot price.

    The recorded entry cut down to its identity fields: no ``regularMarket*``,
    no names, no currency.
    """
    item = quote_item(symbol)
    short = {key: item[key] for key in _IDENTITY_FIELDS if key in item}
    short.update(quoteSourceName="Delayed Quote", customPriceAlertConfidence="LOW")
    short["triggerable"] = False
    return short


def quote_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"quoteResponse": {"result": items, "error": None}}


def chart_body(
    symbol: str, period1: int | None = None, period2: int | None = None
) -> dict[str, Any]:
    """A ``v8/finance/chart`` answer for ``symbol`` from the recorded AAPL template."""
    body = recorded("chart_v8_AAPL_1d.json")
    result = body["chart"]["result"][0]
    meta = result["meta"]
    if symbol != "AAPL":
        meta["symbol"] = symbol
        meta["longName"] = f"{symbol} Corporation"
        meta["shortName"] = f"{symbol} Corp."
    stamps = result["timestamp"]
    keep = [
        i
        for i, ts in enumerate(stamps)
        if (period1 is None or ts >= period1) and (period2 is None or ts < period2)
    ]
    if not keep:
        del result["timestamp"]
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return body
    result["timestamp"] = [stamps[i] for i in keep]
    quote = result["indicators"]["quote"][0]
    for key in list(quote):
        quote[key] = [quote[key][i] for i in keep]
    adj = result["indicators"]["adjclose"][0]
    adj["adjclose"] = [adj["adjclose"][i] for i in keep]
    return body


def news_items() -> list[dict[str, Any]]:
    """The recorded stream items (deep copies)."""
    return recorded("ncp_latestNews_AAPL.json")["data"]["tickerStream"]["stream"]


def news_item(base: int = 0, *, related: list[str] | None = None, **content: Any) -> dict[str, Any]:
    """A stream item derived from recorded item ``base``.

    ``content`` keys replace (value ``...`` removes) fields of ``item["content"]``;
    ``id=...`` also changes/removes the item's top-level id. ``related`` sets
    ``content.finance.stockTickers``.
    """
    item = news_items()[base]
    for key, value in content.items():
        if value is ...:
            item["content"].pop(key, None)
            if key == "id":
                item.pop("id", None)
        else:
            item["content"][key] = value
            if key == "id":
                item["id"] = value
    if related is not None:
        item["content"]["finance"]["stockTickers"] = [{"symbol": s} for s in related]
    return item


def news_body(items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = recorded("ncp_latestNews_AAPL.json")
    if items is not None:
        body["data"]["tickerStream"]["stream"] = items
    return body


# ---------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------


@dataclass
class Reply:
    """A scripted answer for one route."""

    status: int = 200
    body: Any = None  # dict/list -> JSON, str/bytes -> as is, None -> the route's default
    exc: BaseException | None = None  # raised instead of answering
    delay: float = 0.0  # seconds; beyond the request timeout -> ReadTimeout
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None  # None: every request; n: the next n requests


@dataclass
class Recorded:
    route: str
    method: str
    url: str
    params: dict[str, str]
    body: bytes | None


class _OriginalResponse:
    """Enough of ``http.client.HTTPResponse`` for requests' cookie extraction."""

    def __init__(self, msg: http.client.HTTPMessage) -> None:
        self.msg = msg

    def info(self) -> http.client.HTTPMessage:
        return self.msg

    def isclosed(self) -> bool:
        return True


class _FakeYahooAdapter(BaseAdapter):
    def __init__(self, yahoo: FakeYahoo) -> None:
        super().__init__()
        self._yahoo = yahoo
        self._builder = HTTPAdapter()

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # type: ignore[override]
        return self._yahoo._answer(request, timeout, self._builder)

    def close(self) -> None:
        self._builder.close()


class FakeYahoo:
    """Recorded Yahoo answers behind a real ``requests.Session``.

    ``session`` is what goes to yfinance (``session=``). ``known`` symbols get a
    quote and a chart; everything else is unknown to this Yahoo (absent from
    quote answers, 404 on the chart). ``no_price`` symbols get the priceless
    quote entry.
    """

    def __init__(
        self,
        known: set[str] | None = None,
        no_price: set[str] | None = None,
    ) -> None:
        self.known = known  # None: every syntactically sane symbol is known
        self.no_price = set(no_price or ())
        self.counts: Counter[str] = Counter()
        self.requests: list[Recorded] = []
        self._replies: dict[str, list[Reply]] = {}
        self._handlers: dict[str, Callable[[Recorded], tuple[int, Any, dict[str, str]]]] = {}
        self._lock = threading.Lock()
        self.session = requests.Session()
        self.session.mount("https://", _FakeYahooAdapter(self))
        self.session.mount("http://", _FakeYahooAdapter(self))

    # -- scripting ---------------------------------------------------------

    def set(self, route: str, reply: Reply | None = None, **kwargs: Any) -> None:
        """Answer ``route`` with ``reply`` (or ``Reply(**kwargs)``); replaces earlier scripts."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {ROUTES}")
        with self._lock:
            self._replies[route] = [reply or Reply(**kwargs)]

    def then(self, route: str, reply: Reply | None = None, **kwargs: Any) -> None:
        """Queue one more scripted reply after the current ones."""
        with self._lock:
            self._replies.setdefault(route, []).append(reply or Reply(**kwargs))

    def reset(self, route: str | None = None) -> None:
        """Back to the recorded answers (one route or all)."""
        with self._lock:
            if route is None:
                self._replies.clear()
            else:
                self._replies.pop(route, None)

    def handle(
        self, route: str, handler: Callable[[Recorded], tuple[int, Any, dict[str, str]]]
    ) -> None:
        """Compute ``route``'s answers with ``handler(request) -> (status, body, headers)``."""
        self._handlers[route] = handler

    def clear_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.requests.clear()

    def quote_symbols(self) -> list[list[str]]:
        """The symbol list of every quote request, in order."""
        return [r.params.get("symbols", "").split(",") for r in self.requests if r.route == "quote"]

    # -- routing -------------------------------------------------------------

    @staticmethod
    def route_of(host: str, path: str) -> str:
        if host == "fc.yahoo.com":
            return "cookie"
        if host in ("guce.yahoo.com", "consent.yahoo.com"):
            return "consent"
        if host.endswith("finance.yahoo.com"):
            if path == "/v1/test/getcrumb":
                return "crumb"
            if path.rstrip("/") == "/v7/finance/quote":
                return "quote"
            if path.startswith("/v8/finance/chart/"):
                return "chart"
            if path.startswith("/v10/finance/quoteSummary/"):
                return "summary"
            if path == "/v1/finance/search":
                return "search"
            if host == "finance.yahoo.com" and path == "/xhr/ncp":
                return "news"
        return "other"

    def _is_known(self, symbol: str) -> bool:
        return self.known is None or symbol in self.known or symbol in self.no_price

    def _default(self, req: Recorded) -> tuple[int, Any, dict[str, str]]:
        route = req.route
        if route == "cookie":
            return 404, "<html><body>Error 404</body></html>", {"Set-Cookie": A3_COOKIE}
        if route == "crumb":
            return 200, _resource("getcrumb.txt"), {"Content-Type": "text/plain;charset=utf-8"}
        if route == "quote":
            symbols = [s for s in req.params.get("symbols", "").split(",") if s]
            items = []
            for s in symbols:
                if s in self.no_price:
                    items.append(quote_item_without_price(s))
                elif self._is_known(s):
                    items.append(quote_item(s))
            return 200, quote_body(items), {}
        if route == "chart":
            symbol = urlsplit(req.url).path.rsplit("/", 1)[-1]
            if not self._is_known(symbol) or symbol in self.no_price:
                return 404, recorded("chart_v8_not_found.json"), {}
            p1 = req.params.get("period1")
            p2 = req.params.get("period2")
            return 200, chart_body(symbol, int(p1) if p1 else None, int(p2) if p2 else None), {}
        if route == "news":
            return 200, news_body(), {}
        if route == "consent":
            return 200, "<html><body>consent</body></html>", {"Content-Type": "text/html"}
        return (
            404,
            {
                "finance": {
                    "result": None,
                    "error": {"code": "Not Found", "description": "HTTP 404 Not Found"},
                }
            },
            {},
        )

    def _next_reply(self, route: str) -> Reply | None:
        with self._lock:
            queue = self._replies.get(route)
            if not queue:
                return None
            reply = queue[0]
            if reply.times is not None:
                reply.times -= 1
                if reply.times <= 0:
                    queue.pop(0)
            return reply

    def _answer(self, request: requests.PreparedRequest, timeout: Any, builder: HTTPAdapter):
        parts = urlsplit(request.url)
        host = parts.hostname or ""
        route = self.route_of(host, parts.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = request.body.encode() if isinstance(request.body, str) else request.body
        rec = Recorded(route, request.method or "GET", request.url or "", params, body)
        with self._lock:
            self.counts[route] += 1
            self.requests.append(rec)

        reply = self._next_reply(route)
        read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
        if reply is not None and reply.delay:
            if read_timeout is not None and reply.delay > read_timeout:
                time.sleep(read_timeout)
                raise requests.exceptions.ReadTimeout(
                    f"fake Yahoo: read timed out ({read_timeout}s)"
                )
            time.sleep(reply.delay)
        if reply is not None and reply.exc is not None:
            raise reply.exc

        if reply is not None and reply.body is not None:
            status, payload, headers = reply.status, reply.body, dict(reply.headers)
        else:
            handler = self._handlers.get(route, self._default)
            status, payload, headers = handler(rec)
            if reply is not None:
                status = reply.status
                headers.update(reply.headers)
        return self._build(request, status, payload, headers, builder)

    @staticmethod
    def _build(request, status: int, payload: Any, headers: dict[str, str], builder: HTTPAdapter):
        if isinstance(payload, dict | list):
            data = json.dumps(payload, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json;charset=utf-8")
        elif isinstance(payload, str):
            data = payload.encode()
            headers.setdefault("Content-Type", "text/html;charset=utf-8")
        else:
            data = payload or b""
        msg = http.client.HTTPMessage()
        for key, value in headers.items():
            msg[key] = value
        msg["Content-Length"] = str(len(data))
        raw = HTTPResponse(
            body=io.BytesIO(data),
            headers=dict(msg.items()),
            status=status,
            reason=http.client.responses.get(status, ""),
            preload_content=False,
            decode_content=False,
            original_response=_OriginalResponse(msg),  # type: ignore[arg-type]
        )
        return builder.build_response(request, raw)


# ---------------------------------------------------------------------------
# yfinance's process-wide state
# ---------------------------------------------------------------------------


def reset_yfinance(cache_dir: str | Path) -> None:
    """Forget yfinance's singleton session, cookie, crumb, caches and config changes."""
    import yfinance as yf
    from yfinance import cache as yf_cache
    from yfinance.config import YfConfig
    from yfinance.data import SingletonMeta, YfData

    with SingletonMeta._lock:
        SingletonMeta._instances.pop(YfData, None)
    YfData.cache_get.cache_clear()
    # set_tz_cache_location alone does not move caches that were already opened:
    # the cache objects keep their database handle, so drop them too.
    yf.set_tz_cache_location(str(cache_dir))
    yf_cache._TzCacheManager._tz_cache = None
    yf_cache._CookieCacheManager._Cookie_cache = None
    yf_cache._ISINCacheManager._isin_cache = None
    YfConfig._initialised = False  # defaults again (hide_exceptions, retries, proxy)


@contextmanager
def isolated_yfinance(cache_dir: str | Path) -> Iterator[None]:
    """Run a block with fresh yfinance state and caches under ``cache_dir``; reset after."""
    # Only effective if yfinance is imported after this (importing this module sets
    # it too). Either way the seam's session is a requests.Session, so the HTTP
    # errors yfinance re-raises are requests' classes.
    os.environ["YF_DISABLE_CURL_CFFI"] = "1"
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    reset_yfinance(cache_dir)
    try:
        yield
    finally:
        reset_yfinance(cache_dir)


@contextmanager
def fake_yahoo(
    cache_dir: str | Path, known: set[str] | None = None, no_price: set[str] | None = None
) -> Iterator[FakeYahoo]:
    """``isolated_yfinance`` plus a :class:`FakeYahoo` whose session is closed afterwards."""
    with isolated_yfinance(cache_dir):
        yahoo = FakeYahoo(known=known, no_price=no_price)
        try:
            yield yahoo
        finally:
            yahoo.session.close()
