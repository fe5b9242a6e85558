"""Recorded Yahoo answers (in ``tickerhub_testkit/yahoo_responses``) and variants built from them.

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
"""

from __future__ import annotations

import copy
import json
import zlib
from functools import cache
from importlib import resources
from typing import Any

CRUMB = "Xg1mUBk2ZXb"
A3_COOKIE = (
    "A3=d=AQABBOTgqWgCEFakeCookieForTestsOnly&S=AQAAAtest; "
    "Expires=Wed, 26 Aug 2099 10:00:00 GMT; Max-Age=31557600; Domain=.yahoo.com; "
    "Path=/; SameSite=None; Secure; HttpOnly"
)


def resource(name: str) -> str:
    return resources.files("tickerhub_testkit").joinpath("yahoo_responses", name).read_text("utf-8")


@cache
def _recorded_json(name: str) -> Any:
    return json.loads(resource(name))


def recorded(name: str) -> Any:
    """A deep copy of a recorded JSON body, e.g. ``recorded("chart_v8_AAPL_1d.json")``."""
    return copy.deepcopy(_recorded_json(name))


def will_be_right_back_html() -> str:
    return resource("will_be_right_back.html")


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


def quote_body(items: list[Any]) -> dict[str, Any]:  # Any: malformed items too
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


def news_item(base: int = 0, *, related: list[Any] | None = None, **content: Any) -> dict[str, Any]:
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
