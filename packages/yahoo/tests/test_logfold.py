"""yfinance's repeating warnings are folded; fails loudly if yfinance changes their texts."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest
import requests

from tickerhub_testkit.yahoo import fake_yahoo
from tickerhub_yahoo import logfold
from tickerhub_yahoo.client import YahooClient, load
from tickerhub_yahoo.logfold import FOLDED, YahooLogFold, folded_kind

# The texts yfinance 1.7 logs (yfinance/data.py), as the folded patterns must match them.
YFINANCE_TEXTS = {
    "crumb_failed": (
        'f"Cookie/crumb fetch failed ({type(e).__name__}), continuing without crumb"',
        "Cookie/crumb fetch failed (DNSError), continuing without crumb",
    ),
    "crumb_rate_limited": (
        '"Crumb fetch rate-limited (HTTP 429), continuing without crumb"',
        "Crumb fetch rate-limited (HTTP 429), continuing without crumb",
    ),
    "cookie_failed": (
        'f"Cookie fetch from fc.yahoo.com failed ({type(e).__name__}), continuing without it"',
        "Cookie fetch from fc.yahoo.com failed (ReadTimeout), continuing without it",
    ),
}


def test_the_folded_texts_are_still_in_yfinance() -> None:
    load()
    import yfinance.data

    source = inspect.getsource(yfinance.data)
    assert set(YFINANCE_TEXTS) == set(FOLDED)
    for kind, (literal, example) in YFINANCE_TEXTS.items():
        assert literal in source, f"yfinance no longer logs {literal}: update FOLDED[{kind!r}]"
        assert folded_kind(example) == kind


def test_the_adapter_installs_the_fold_on_the_yfinance_logger() -> None:
    load()
    assert logfold.fold() in logging.getLogger("yfinance").filters


def test_yfinances_own_crumb_warning_is_folded_on_every_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through yfinance's own code: the crumb fetch fails (as without DNS), yfinance warns
    and goes on without a crumb; the warning never reaches a handler, and is counted."""
    caplog.set_level(logging.DEBUG, logger="yfinance")
    fold = logfold.fold()
    before = fold.counts["crumb_failed"]
    with fake_yahoo(tmp_path / "yf") as yahoo:
        yahoo.set("crumb", exc=requests.exceptions.ConnectionError("fake: no DNS"))
        client = YahooClient(timeout=5, session=yahoo.session)
        for _ in range(3):
            assert client.quote_json(["AAPL"], "symbol,regularMarketPrice")
    assert yahoo.counts["crumb"] >= 3
    assert fold.counts["crumb_failed"] - before >= 3
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any("Cookie/crumb" in m for m in shown), shown


def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("yfinance", level, __file__, 1, message, None, None)


def test_other_warnings_pass_once_per_episode() -> None:
    fold = YahooLogFold()
    assert fold.filter(record("AAPL: Failed to retrieve the news")) is True
    assert fold.filter(record("AAPL: Failed to retrieve the news")) is False
    assert fold.filter(record("MSFT: Failed to retrieve the news")) is True
    assert fold.filter(record("debug chatter", logging.DEBUG)) is True  # only if asked for
    assert fold.filter(record("debug chatter", logging.DEBUG)) is True
    fold.succeeded()  # the episode is over: the next failure shows again
    assert fold.filter(record("AAPL: Failed to retrieve the news")) is True
    assert fold.counts["AAPL: Failed to retrieve the news"] == 1


def test_folded_warnings_never_pass() -> None:
    fold = YahooLogFold()
    text = "Cookie/crumb fetch failed (DNSError), continuing without crumb"
    assert fold.filter(record(text)) is False
    fold.succeeded()
    assert fold.filter(record(text)) is False
    assert fold.counts["crumb_failed"] == 2
