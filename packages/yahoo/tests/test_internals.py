"""Fails loudly when a yfinance private name the adapter (or its test reset) uses changes.

``tickerhub_yahoo`` bounds yfinance to 1.7.x because of these; before widening
the bound, make this file pass against the new version.
"""

from __future__ import annotations

import inspect
import re
import threading
from pathlib import Path

import requests

from tickerhub_yahoo.client import QUOTE_URL, load
from tickerhub_yahoo.testing import isolated_yfinance


def params(fn: object) -> list[str]:
    return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]


def test_version_is_the_one_verified() -> None:
    assert load().__version__.startswith("1.7."), load().__version__


def test_yfdata_calls_the_adapter_makes() -> None:
    from yfinance.data import SingletonMeta, YfData

    assert params(YfData.__init__)[:2] == ["self", "session"]
    assert params(YfData.get_raw_json)[:4] == ["self", "url", "params", "timeout"]
    assert params(YfData.get)[:4] == ["self", "url", "params", "timeout"]
    assert callable(YfData.cache_get.cache_clear)  # the lru_cache history goes through
    assert isinstance(SingletonMeta._instances, dict)
    assert isinstance(SingletonMeta._lock, type(threading.Lock()))


def test_yfdata_installs_the_session_and_exposes_it(tmp_path: Path) -> None:
    session = requests.Session()
    with isolated_yfinance(tmp_path):
        from yfinance.data import YfData

        data = YfData(session=session)
        assert data._session is session  # Ticker gets it, or builds its own
        assert YfData() is data  # a process-wide singleton: what the reset undoes


def test_ticker_calls_keep_their_arguments() -> None:
    yf = load()
    from yfinance.scrapers.history import PriceHistory

    assert params(yf.Ticker.__init__)[:3] == ["self", "ticker", "session"]
    history = params(PriceHistory.history)
    for name in ("start", "end", "interval", "auto_adjust", "actions", "timeout", "raise_errors"):
        assert name in history, name
    assert params(yf.Ticker.get_news)[:3] == ["self", "count", "tab"]


def test_timezone_cache_and_what_the_test_reset_touches(tmp_path: Path) -> None:
    yf = load()
    from yfinance import cache as yf_cache
    from yfinance.config import YfConfig

    for manager, attr in (
        (yf_cache._TzCacheManager, "_tz_cache"),
        (yf_cache._CookieCacheManager, "_Cookie_cache"),
        (yf_cache._ISINCacheManager, "_isin_cache"),
    ):
        assert hasattr(manager, attr), f"{manager.__name__}.{attr}"
    assert hasattr(YfConfig, "_initialised")
    assert callable(yf.set_tz_cache_location)
    with isolated_yfinance(tmp_path):
        tz_cache = yf_cache.get_tz_cache()
        tz_cache.store("TEST", "America/New_York")
        assert tz_cache.lookup("TEST") == "America/New_York"
    with isolated_yfinance(tmp_path / "other"):
        assert yf_cache.get_tz_cache().lookup("TEST") is None  # the reset moved the cache


def test_exception_classes_the_classifier_names() -> None:
    load()
    from yfinance import exceptions as e

    assert issubclass(e.YFTzMissingError, e.YFTickerMissingError)
    assert issubclass(e.YFPricesMissingError, e.YFTickerMissingError)
    for name in ("YFRateLimitError", "YFInvalidPeriodError", "YFDataException"):
        assert issubclass(getattr(e, name), e.YFException), name


def test_outage_page_is_still_reported_by_message() -> None:
    """The one string test in the classifier: yfinance's text for 'Will be right back'."""
    load()
    import yfinance.base

    assert "CURRENTLY DOWN" in inspect.getsource(yfinance.base)


def test_quote_url_is_the_v7_batch_endpoint() -> None:
    assert re.fullmatch(r"https://query[12]\.finance\.yahoo\.com/v7/finance/quote", QUOTE_URL)


def test_pricing_data_is_where_and_what_the_streamer_decodes() -> None:
    """yfinance/pricing_pb2.PricingData: the streamer decodes with it and maps these fields."""
    from google.protobuf.message import DecodeError

    from tickerhub_yahoo.streamer import pricing_data_class

    cls = pricing_data_class()
    fields = {f.name: f.type for f in cls.DESCRIPTOR.fields}
    wanted = {
        "id", "price", "time", "currency", "exchange", "market_hours", "change_percent",
        "day_volume", "day_high", "day_low", "change", "short_name", "open_price",
        "previous_close",
    }  # fmt: skip
    assert wanted <= set(fields), sorted(wanted - set(fields))
    desc = cls.DESCRIPTOR.fields_by_name
    # price-like fields are 32-bit floats (pricing.py rounds them), time/volume integers
    assert desc["price"].type == desc["price"].TYPE_FLOAT
    assert desc["time"].type == desc["time"].TYPE_SINT64
    assert desc["day_volume"].type == desc["day_volume"].TYPE_SINT64
    assert desc["market_hours"].type == desc["market_hours"].TYPE_INT32
    assert issubclass(DecodeError, Exception)


def test_yfinance_live_still_decodes_base64_pricing_data() -> None:
    """What our decoding copies: yfinance's own base64 -> PricingData in live.py."""
    load()
    import yfinance.live

    source = inspect.getsource(yfinance.live.BaseWebSocket._decode_message)
    assert "b64decode" in source
    assert "PricingData" in source
    assert "streamer.finance.yahoo.com" in inspect.getsource(yfinance.live)
