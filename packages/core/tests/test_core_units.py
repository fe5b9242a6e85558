import logging
import random

import orjson
import pytest

from tickerhub_core import wire
from tickerhub_core.backoff import Backoff
from tickerhub_core.keys import RedisKeys
from tickerhub_core.logs import ConditionLog
from tickerhub_core.models import QUOTE_DATA_FIELDS, iso_utc, make_quote
from tickerhub_core.symbols import InvalidSymbolError, normalize_symbol, parse_symbol_list


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("aapl", "AAPL"), (" msft ", "MSFT"), ("^gspc", "^GSPC"), ("eurusd=x", "EURUSD=X"),
     ("brk-b", "BRK-B"), ("7203.t", "7203.T"), ("btc-usd", "BTC-USD")],
)  # fmt: skip
def test_normalize_accepts_real_symbols(raw: str, canonical: str) -> None:
    assert normalize_symbol(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    ["", " ", "AA PL", "prices:seq", "A*", "A\nB", "-AAPL", "A" * 21, "ÄPFEL", None, 42, ["A"],
     # upper-case to ASCII: long s -> S, the ff ligature -> FF, dotless i -> I
     "t\u017fla", "\ufb00", "\u0131bm", "\u212aO"],
)  # fmt: skip
def test_normalize_rejects_implausible_symbols(raw: object) -> None:
    with pytest.raises(InvalidSymbolError):
        normalize_symbol(raw)


def test_parse_symbol_list_dedupes_in_order() -> None:
    assert parse_symbol_list("msft, AAPL,,msft ,") == ["MSFT", "AAPL"]
    assert parse_symbol_list(["x", "X", "y"]) == ["X", "Y"]


def test_long_invalid_symbol_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidSymbolError) as info:
        normalize_symbol("x" * 500)
    assert len(str(info.value)) < 80


def test_keys_take_the_prefix() -> None:
    assert RedisKeys().prices == "prices"
    assert RedisKeys().prices_channel == "price-diffs"
    keys = RedisKeys("hub1:")
    assert {keys.prices, keys.prices_seq, keys.news, keys.news_items} == {
        "hub1:prices", "hub1:prices:seq", "hub1:news", "hub1:news:items"
    }  # fmt: skip


def test_diff_message_shape() -> None:
    msg = orjson.loads(wire.diff_message(7, {"AAPL": {"symbol": "AAPL", "seq": 7}}, ts=123))
    assert msg == {
        "type": "diff",
        "seq": 7,
        "ts": 123,
        "data": {"AAPL": {"symbol": "AAPL", "seq": 7}},
    }
    assert orjson.loads(wire.reset_message(9, ts=1)) == {"type": "reset", "seq": 9, "ts": 1}
    err = orjson.loads(wire.error_message("bad", "nope", symbols=["X"]))
    assert err == {"type": "error", "code": "bad", "message": "nope", "symbols": ["X"]}


def test_iso_utc_renders_all_inputs_in_utc() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
    assert iso_utc("2026-11-25T10:00:00+02:00") == "2026-11-25T08:00:00Z"
    assert iso_utc(None) is None


def test_make_quote_has_every_field_and_rejects_unknown() -> None:
    quote = make_quote("AAPL", price=1.0)
    assert set(quote) == {"symbol", *QUOTE_DATA_FIELDS}
    assert quote["price"] == 1.0
    assert quote["volume"] is None
    with pytest.raises(TypeError):
        make_quote("AAPL", bogus=1)


def test_backoff_grows_exponentially_with_jitter_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8, 8, 8]
    assert all(0 < d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not lock-step
    assert backoff.failing
    backoff.reset()
    assert not backoff.failing
    assert backoff.next_delay() <= 1.0


def test_condition_log_logs_start_summary_and_recovery_not_every_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    cond = ConditionLog(logging.getLogger("t"), "redis", every=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO):
        for _ in range(100):  # 100 failures within 50 s
            cond.failed("down")
            now[0] += 0.5
        assert len(caplog.records) == 1
        now[0] += 20
        cond.failed("down")  # 70 s in: one summary
        assert len(caplog.records) == 2
        assert "still failing after 101 attempts" in caplog.records[-1].getMessage()
        cond.recovered()
        cond.recovered()
    assert len(caplog.records) == 3
    assert "recovered after 101 failures" in caplog.records[-1].getMessage()


def test_a_trailing_newline_is_not_a_valid_symbol() -> None:
    from tickerhub_core.symbols import is_valid_symbol

    assert is_valid_symbol("AAPL")
    assert not is_valid_symbol("AAPL\n")


async def test_honour_cancellation_raises_a_pending_cancel() -> None:
    import asyncio
    import contextlib

    from tickerhub_core.cancellation import honour_cancellation

    async def swallower(started: asyncio.Event) -> str:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # a library swallowing the cancel
            await asyncio.sleep(10)
        honour_cancellation()
        return "ran on"

    started = asyncio.Event()
    task = asyncio.create_task(swallower(started))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    honour_cancellation()  # no cancel pending here: nothing happens


def test_settle_heap_freezes_and_raises_the_thresholds() -> None:
    """In a fresh interpreter: the collector's state is process-wide."""
    import subprocess
    import sys

    code = (
        "import gc, json\n"
        "from tickerhub_core.gcpolicy import THRESHOLDS, settle_heap\n"
        "before = gc.get_freeze_count()\n"
        "settle_heap()\n"
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold(), THRESHOLDS]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after, threshold, wanted = orjson.loads(out.stdout)
    assert before == 0
    assert after > 1000  # the modules imported so far, out of the collector's sight
    assert threshold == wanted
    assert threshold[0] > 700  # rarer than CPython's default young collections
