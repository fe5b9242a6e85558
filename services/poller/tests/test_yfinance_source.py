"""YFinanceSource against the offline Yahoo seam: yfinance's real code, recorded answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tickerhub_core.models import QUOTE_DATA_FIELDS
from tickerhub_poller.sources.base import (
    MalformedResponseError,
    NoDataError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
)
from tickerhub_poller.sources.yfinance import YFinanceSource
from tickerhub_testkit.yahoo import (
    FakeYahoo,
    Reply,
    fake_yahoo,
    news_body,
    news_item,
    quote_body,
    quote_item,
    will_be_right_back_html,
)


@pytest.fixture
def yahoo(tmp_path: Path) -> Iterator[FakeYahoo]:
    with fake_yahoo(tmp_path / "yfinance-cache") as fake:
        yield fake


@pytest.fixture
async def source(yahoo: FakeYahoo):
    src = YFinanceSource(max_batch=50, timeout=2.0, session=yahoo.session)
    yield src
    await src.aclose()


# -- quotes: the happy path ---------------------------------------------------


async def test_batch_maps_every_field(yahoo: FakeYahoo, source: YFinanceSource) -> None:
    result = await source.fetch_quotes(["AAPL", "MSFT"])

    assert set(result) == {"AAPL", "MSFT"}
    aapl = result["AAPL"]
    # Values of the recorded v7 answer (quote_v7_AAPL-MSFT.json).
    assert aapl == {
        "symbol": "AAPL",
        "name": "Apple Inc.",
        "price": 225.44,
        "change": -1.7200012,
        "change_percent": -0.7571761,
        "previous_close": 227.16,
        "open": 226.87,
        "day_high": 227.05,
        "day_low": 224.69,
        "volume": 4871466,
        "currency": "USD",
        "exchange": "NasdaqGS",
        "market_state": "REGULAR",
        "market_time": "2025-08-26T14:01:19Z",
    }
    assert set(aapl) == {"symbol", *QUOTE_DATA_FIELDS}
    assert not isinstance(aapl, SourceError)
    assert isinstance(aapl["volume"], int)
    msft = result["MSFT"]
    assert not isinstance(msft, SourceError)
    assert msft["price"] == 503.505
    assert msft["name"] == "Microsoft Corporation"

    # One quote request for the batch, through yfinance's cookie + crumb.
    assert yahoo.counts == {"cookie": 1, "crumb": 1, "quote": 1}
    (request,) = [r for r in yahoo.requests if r.route == "quote"]
    assert request.params["symbols"] == "AAPL,MSFT"
    assert request.params["formatted"] == "false"
    assert request.params["crumb"] == "Xg1mUBk2ZXb"


async def test_exchange_falls_back_and_name_falls_back(
    yahoo: FakeYahoo, source: YFinanceSource
) -> None:
    item = quote_item("IBM", fullExchangeName=..., shortName=..., longName="IBM Long")
    yahoo.set("quote", body=quote_body([item]))
    quote = (await source.fetch_quotes(["IBM"]))["IBM"]
    assert not isinstance(quote, SourceError)
    assert quote["exchange"] == "NMS"
    assert quote["name"] == "IBM Long"


async def test_no_price_and_missing_symbols_beside_good_ones(tmp_path: Path) -> None:
    with fake_yahoo(tmp_path / "c", known={"AAPL", "MSFT"}, no_price={"DEAD"}) as yahoo:
        src = YFinanceSource(session=yahoo.session)
        result = await src.fetch_quotes(["AAPL", "DEAD", "GONE", "MSFT"])
        await src.aclose()

    assert list(result) == ["AAPL", "DEAD", "GONE", "MSFT"]
    assert result["AAPL"]["price"] == 225.44  # type: ignore[index]
    assert result["MSFT"]["price"] == 503.505  # type: ignore[index]
    assert isinstance(result["DEAD"], NoDataError)
    assert isinstance(result["GONE"], NoDataError)
    assert yahoo.counts["quote"] == 1


async def test_empty_result_is_no_data_for_everyone(
    yahoo: FakeYahoo, source: YFinanceSource
) -> None:
    yahoo.set("quote", body={"quoteResponse": {"result": [], "error": None}})
    result = await source.fetch_quotes(["AAPL", "MSFT"])
    assert all(isinstance(v, NoDataError) for v in result.values())
    assert set(result) == {"AAPL", "MSFT"}


async def test_invalid_symbol_is_never_sent(yahoo: FakeYahoo, source: YFinanceSource) -> None:
    result = await source.fetch_quotes(["AAPL", "BAD SYMBOL", "x:*"])
    assert isinstance(result["BAD SYMBOL"], NoDataError)
    assert isinstance(result["x:*"], NoDataError)
    assert result["AAPL"]["price"] == 225.44  # type: ignore[index]
    assert yahoo.quote_symbols() == [["AAPL"]]


async def test_no_stale_data_between_polls(yahoo: FakeYahoo, source: YFinanceSource) -> None:
    first = await source.fetch_quotes(["AAPL"])
    yahoo.set("quote", body=quote_body([quote_item("AAPL", regularMarketPrice=230.5)]))
    second = await source.fetch_quotes(["AAPL"])
    assert first["AAPL"]["price"] == 225.44  # type: ignore[index]
    assert second["AAPL"]["price"] == 230.5  # type: ignore[index]
    assert yahoo.counts["quote"] == 2


# -- quotes: failures of the whole batch ---------------------------------------


async def test_http_429_is_rate_limited(yahoo: FakeYahoo, source: YFinanceSource) -> None:
    yahoo.set("quote", status=429, body="Edge: Too Many Requests")
    with pytest.raises(RateLimitedError):
        await source.fetch_quotes(["AAPL", "MSFT"])
    # yfinance retries once with its other cookie strategy before giving up.
    assert yahoo.counts["quote"] == 2


async def test_crumb_429_then_quote_429_is_rate_limited(
    yahoo: FakeYahoo, source: YFinanceSource
) -> None:
    yahoo.set("crumb", status=429, body="Too Many Requests")
    yahoo.set("quote", status=429, body="Too Many Requests")
    with pytest.raises(RateLimitedError):
        await source.fetch_quotes(["AAPL"])


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=500, body=will_be_right_back_html()),
        Reply(status=502, body="<html><body>Bad Gateway</body></html>"),
        Reply(status=503, body={"finance": {"result": None, "error": {"code": "Service"}}}),
    ],
    ids=["500-will-be-right-back", "502-html", "503-json"],
)
async def test_5xx_is_unavailable(yahoo: FakeYahoo, source: YFinanceSource, reply: Reply) -> None:
    yahoo.set("quote", reply)
    with pytest.raises(SourceUnavailableError):
        await source.fetch_quotes(["AAPL"])


async def test_5xx_once_then_recovers(yahoo: FakeYahoo, source: YFinanceSource) -> None:
    yahoo.set("quote", status=500, body=will_be_right_back_html(), times=2)
    with pytest.raises(SourceUnavailableError):
        await source.fetch_quotes(["AAPL"])
    result = await source.fetch_quotes(["AAPL"])
    assert result["AAPL"]["price"] == 225.44  # type: ignore[index]


async def test_slow_answer_times_out(yahoo: FakeYahoo) -> None:
    src = YFinanceSource(timeout=0.3, session=yahoo.session)
    yahoo.set("quote", delay=5.0)
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError):
        await src.fetch_quotes(["AAPL"])
    assert time.monotonic() - started < 2.0
    await src.aclose()


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectionError("connection refused"),
    ],
    ids=["read-timeout", "connection-error"],
)
async def test_network_errors_are_unavailable(
    yahoo: FakeYahoo, source: YFinanceSource, exc: Exception
) -> None:
    yahoo.set("quote", exc=exc)
    with pytest.raises(SourceUnavailableError):
        await source.fetch_quotes(["AAPL"])


@pytest.mark.parametrize(
    "body",
    [
        '{"quoteResponse": {"result": [',  # truncated
        "<html><body>hello</body></html>",  # 200 but HTML
        {
            "finance": {
                "result": None,
                "error": {"code": "Unauthorized", "description": "Invalid Crumb"},
            }
        },
        {"quoteResponse": {"result": {"symbol": "AAPL"}, "error": None}},
        {"quoteResponse": {"result": [], "error": {"code": "Bad Request", "description": "x"}}},
        ["not", "an", "object"],
    ],
    ids=["truncated", "html", "finance-error", "result-not-list", "error-set", "list"],
)
async def test_malformed_answers(yahoo: FakeYahoo, source: YFinanceSource, body: object) -> None:
    yahoo.set("quote", status=200, body=body)
    with pytest.raises(MalformedResponseError):
        await source.fetch_quotes(["AAPL"])


async def test_weird_values_do_not_escape(yahoo: FakeYahoo, source: YFinanceSource) -> None:
    items = [
        quote_item("AAPL", regularMarketPrice="225.44"),  # a string: not a price
        quote_item("MSFT", regularMarketVolume="lots", regularMarketTime=None),
        "garbage",
    ]
    yahoo.set("quote", body=quote_body(items))
    result = await source.fetch_quotes(["AAPL", "MSFT"])
    assert isinstance(result["AAPL"], NoDataError)
    assert result["MSFT"]["volume"] is None  # type: ignore[index]
    assert result["MSFT"]["market_time"] is None  # type: ignore[index]


# -- news ---------------------------------------------------------------------------


async def test_news_mapping(yahoo: FakeYahoo, source: YFinanceSource) -> None:
    items = await source.fetch_news("AAPL", 10)

    assert [i["id"] for i in items] == [
        "fc4043eb-cc0e-3d40-8d70-a105b0284608",
        "1e29dde2-0424-397d-91b2-2b62c41baf9d",
        "4f81d237-ffe4-3d82-8f06-39c3916cd53b",
    ]
    assert items[0] == {
        "id": "fc4043eb-cc0e-3d40-8d70-a105b0284608",
        "title": "Apple Stock Slides After Surprise-Free iPhone 17 Reveal",
        "publisher": "Investor's Business Daily",
        "link": "https://www.investors.com/news/technology/apple-stock-iphone-17-introduction/?src=A00220&yptr=yahoo",
        "published_at": "2025-09-09T18:32:03Z",
        "tickers": ["AAPL"],
    }
    assert items[1]["publisher"] == "TechCrunch"
    assert items[2]["published_at"] == "2025-09-08T23:00:18Z"

    (request,) = [r for r in yahoo.requests if r.route == "news"]
    assert request.method == "POST"
    assert request.params["queryRef"] == "latestNews"
    assert json.loads(request.body or b"{}")["serviceConfig"] == {"snippetCount": 10, "s": ["AAPL"]}


async def test_news_related_tickers_link_fallback_and_bad_items(
    yahoo: FakeYahoo, source: YFinanceSource
) -> None:
    stream = [
        news_item(0, related=["msft", "AAPL", "bad ticker!", "^GSPC", 42]),
        news_item(1, id="no-title", title=...),
        news_item(1, id="no-date", pubDate=...),
        news_item(1, id=...),
        news_item(1, id="bad-date", pubDate="yesterday"),
        news_item(2, id="click-only", canonicalUrl=None),
        {"id": "no-content"},
    ]
    yahoo.set("news", body=news_body(stream))
    items = await source.fetch_news("AAPL", 10)

    assert [i["id"] for i in items] == ["fc4043eb-cc0e-3d40-8d70-a105b0284608", "click-only"]
    assert items[0]["tickers"] == ["AAPL", "MSFT", "^GSPC"]
    assert items[1]["link"] == (
        "https://finance.yahoo.com/video/apple-event-labor-revisions-oracle-230018519.html"
    )


async def test_news_count_is_respected_and_never_cached(
    yahoo: FakeYahoo, source: YFinanceSource
) -> None:
    assert len(await source.fetch_news("AAPL", 2)) == 2
    yahoo.set("news", body=news_body([news_item(1, id="fresh")]))
    items = await source.fetch_news("AAPL", 2)
    assert [i["id"] for i in items] == ["fresh"]
    assert yahoo.counts["news"] == 2


async def test_news_errors(yahoo: FakeYahoo, source: YFinanceSource) -> None:
    yahoo.set("news", status=429, body="Too Many Requests")
    with pytest.raises(RateLimitedError):
        await source.fetch_news("AAPL", 5)
    yahoo.set("news", status=500, body=will_be_right_back_html())
    with pytest.raises(SourceUnavailableError):
        await source.fetch_news("AAPL", 5)
    yahoo.set("news", exc=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(SourceUnavailableError):
        await source.fetch_news("AAPL", 5)
    yahoo.set("news", body={"data": None})
    with pytest.raises(MalformedResponseError):
        await source.fetch_news("AAPL", 5)


# -- lifecycle ------------------------------------------------------------------------


async def test_construction_touches_nothing_and_aclose_refuses_new_calls(
    yahoo: FakeYahoo,
) -> None:
    src = YFinanceSource(max_batch=7, session=yahoo.session)
    assert src.name == "yfinance"
    assert src.max_batch == 7
    assert sum(yahoo.counts.values()) == 0
    await src.aclose()
    with pytest.raises(SourceUnavailableError):
        await src.fetch_quotes(["AAPL"])
    assert sum(yahoo.counts.values()) == 0


def test_constructing_the_source_loads_yfinance_before_any_worker_thread() -> None:
    """The quote and news threads must never be the ones importing yfinance (import race)."""
    code = (
        "import sys, threading\n"
        "from tickerhub_poller.sources.yfinance import YFinanceSource\n"
        "assert 'yfinance' not in sys.modules\n"
        "YFinanceSource()\n"
        "print('yfinance.data' in sys.modules, threading.active_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "True 1", result.stdout + result.stderr
