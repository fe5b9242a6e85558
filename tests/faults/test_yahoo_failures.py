"""Yahoo fails in every way the offline seam can show; the real Poller keeps going.

The real ``Poller`` runs in-process with ``YFinanceSource`` on FakeYahoo's session
(yfinance's own code runs, only the wire is fake) and a real redis-server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import requests
from redis.asyncio import Redis

from tickerhub_poller import tickers
from tickerhub_poller.service import Poller
from tickerhub_poller.settings import PollerSettings
from tickerhub_poller.sources.yfinance import YFinanceSource
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.yahoo import (
    Recorded,
    fake_yahoo,
    quote_body,
    quote_item,
    will_be_right_back_html,
)

# A hang must fail fast (and dump stacks), not eat the suite's whole time budget.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

GOOD = ("AAPL", "MSFT")
BAD = "GOOG"
STALE_AFTER = 2
# The source's deadline. Generous: on a busy 2-core box a good request (a worker
# thread, yfinance's crumb lock, which every 4xx/5xx makes it refetch) took more
# than 0.3 s, so good symbols failed too. Only the "deadline" answer is slower.
DEADLINE = 2.0

Answer = tuple[int, Any, dict[str, str]]


class Market:
    """The quote route: every request gets fresh prices; ``failure`` answers for BAD.

    It remembers the last price it answered for each symbol, so a test knows the
    last good price the poller got, even when a request was in flight (or answered
    but not yet published) at the moment the failure started.
    """

    def __init__(self) -> None:
        self.tick = 0
        self.failure: Callable[[list[str]], Answer] | None = None
        self.fail_all = False
        self.served: dict[str, float] = {}  # symbol -> last price answered
        self.lock = threading.Lock()

    def fail(self, answer: Callable[[list[str]], Answer], every: bool = False) -> dict[str, float]:
        """From now on answer with ``answer``; returns the prices answered until now."""
        with self.lock:
            self.failure = answer
            self.fail_all = every
            return dict(self.served)

    def recover(self) -> None:
        with self.lock:
            self.failure = None
            self.fail_all = False

    def __call__(self, req: Recorded) -> Answer:
        symbols = [s for s in req.params.get("symbols", "").split(",") if s]
        with self.lock:
            self.tick += 1
            price = 100.0 + self.tick / 100
            failure = self.failure
            if failure is None or not (self.fail_all or BAD in symbols):
                self.served.update(dict.fromkeys(symbols, price))
                failure = None
        if failure is not None:
            return failure(symbols)
        items = [quote_item(s, regularMarketPrice=price) for s in symbols]
        return 200, quote_body(items), {}


def timeout_answer(_: list[str]) -> Answer:
    time.sleep(0.2)
    raise requests.exceptions.ReadTimeout("fake Yahoo: read timed out")


def slow_answer(_: list[str]) -> Answer:
    time.sleep(DEADLINE + 1.0)  # past the source's own deadline
    return 200, quote_body([]), {}


def delisted_answer(symbols: list[str]) -> Answer:
    """Yahoo leaves a symbol it no longer knows out of ``result``."""
    return 200, quote_body([quote_item(s) for s in symbols if s != BAD]), {}


FAILURES: dict[str, tuple[Callable[[list[str]], Answer], int]] = {
    # name: (answer for requests naming BAD, batch size)
    "http_500": (lambda _: (500, {"error": "Internal Server Error"}, {}), 1),
    "http_503_right_back": (
        lambda _: (503, will_be_right_back_html(), {"Content-Type": "text/html"}),
        1,
    ),
    "read_timeout": (timeout_answer, 1),
    "deadline": (slow_answer, 1),
    "not_json": (lambda _: (200, "<html><body>oops</body></html>", {}), 1),
    "truncated_json": (
        lambda _: (200, '{"quoteResponse": {"result": [', {"Content-Type": "application/json"}),
        1,
    ),
    "wrong_shape": (lambda _: (200, {"finance": {"result": None}}, {}), 1),
    "empty_result": (lambda _: (200, quote_body([]), {}), 1),
    "null_result": (lambda _: (200, {"quoteResponse": {"result": None, "error": None}}, {}), 1),
    "no_price": (
        lambda s: (200, quote_body([quote_item(x, regularMarketPrice=...) for x in s]), {}),
        1,
    ),
    "delisted_in_a_good_batch": (delisted_answer, 50),
}
# Answers that say "no data for BAD" (NoDataError): the symbol is then retried
# every NO_DATA_RETRY seconds, not every poll.
NO_DATA = frozenset({"no_price", "empty_result", "null_result", "delisted_in_a_good_batch"})
NO_DATA_RETRY = 0.5  # instead of 300 s, so the recovery is observed here


def settings(url: str, batch_size: int) -> PollerSettings:
    return PollerSettings(
        redis_url=url,
        tickers=[*GOOD, BAD],
        poll_freq=0.05,
        stale_after=STALE_AFTER,
        batch_size=batch_size,
        batch_window=0.01,
        news_interval=0,
        request_timeout=DEADLINE,
        stream="off",  # polling under test; Yahoo's stream is unreachable offline anyway
    )


async def stored(redis: Redis) -> dict[str, dict[str, Any]]:
    return {k.decode(): orjson.loads(v) for k, v in (await redis.hgetall("prices")).items()}


class Running:
    def __init__(self, poller: Poller) -> None:
        self.poller = poller
        self.task = asyncio.create_task(poller.run())

    async def stop(self) -> None:
        assert not self.task.done(), self.task  # never crashed
        self.task.cancel()
        done, _ = await asyncio.wait({self.task}, timeout=15)
        if not done:
            for task in asyncio.all_tasks():
                task.print_stack()
            raise AssertionError("the poller did not stop within 15 s of being cancelled")
        assert self.task.cancelled(), self.task


def condition_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records that report a failure or a recovery (not the routine start-up lines)."""
    return [
        r
        for r in caplog.records
        if r.name.startswith("tickerhub")
        and (r.levelno >= logging.WARNING or "recovered" in r.getMessage())
    ]


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_one_symbol_failing_keeps_the_others_flowing_and_goes_stale(
    failure: str,
    redis_server: Any,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(tickers, "NO_DATA_RETRY", NO_DATA_RETRY)
    answer, batch_size = FAILURES[failure]
    market = Market()
    redis = Redis.from_url(redis_server.url)
    with fake_yahoo(tmp_path / "yf") as yahoo:
        yahoo.handle("quote", market)
        source = YFinanceSource(max_batch=batch_size, timeout=DEADLINE, session=yahoo.session)
        running = Running(Poller(settings(redis_server.url, batch_size), redis, source))
        try:
            await eventually(lambda: _all_priced(redis, [*GOOD, BAD]), "every symbol priced once")
            caplog.clear()
            # The last price BAD was answered: polling goes on, so it can be newer
            # than what Redis showed a moment ago.
            last_good = market.fail(answer)[BAD]
            failing_since = yahoo.counts["quote"]  # every later request naming BAD fails

            quotes = await eventually(lambda: _stale(redis, BAD), f"{BAD} marked stale")
            assert quotes[BAD]["price"] == last_good  # the last good price is kept
            assert all(not quotes[s]["stale"] for s in GOOD)
            # The others keep being published while BAD keeps failing.
            prices = {s: quotes[s]["price"] for s in GOOD}
            later = await eventually(lambda: _moved(redis, prices), "the good symbols keep moving")
            await asyncio.sleep(1.5)  # several more cycles with BAD failing
            later = await stored(redis)
            assert later[BAD]["stale"] is True
            assert later[BAD]["price"] == last_good
            assert all(not later[s]["stale"] for s in GOOD)
            bad_requests = sum(BAD in s for s in yahoo.quote_symbols()[failing_since:])
            assert bad_requests >= STALE_AFTER

            # Each condition is logged once, not once per failed cycle.
            records = condition_records(caplog)
            messages = [r.getMessage() for r in records]
            stale_lines = [m for m in messages if "marked stale" in m]
            assert len(stale_lines) == 1, messages
            assert len(records) <= 3, f"{bad_requests} failed requests, logged:\n" + "\n".join(
                messages
            )
            assert not any(r.exc_info for r in records), messages

            # Recovery: BAD is fresh again with a new price, and that is logged.
            market.recover()
            fresh = await eventually(lambda: _fresh(redis, BAD), f"{BAD} fresh again")
            assert fresh[BAD]["price"] != last_good
            assert not fresh[BAD]["stale"]
            assert all(not fresh[s]["stale"] for s in GOOD)
            if failure not in NO_DATA:  # a batch failed: the batcher's condition ends
                await eventually(
                    lambda: _logged(caplog, "recovered"), "the recovery logged by the batcher"
                )
        finally:
            await running.stop()
            await source.aclose()
            await redis.aclose()


async def test_rate_limit_pauses_every_batch_and_recovers(
    redis_server: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    market = Market()
    redis = Redis.from_url(redis_server.url)
    with fake_yahoo(tmp_path / "yf") as yahoo:
        yahoo.handle("quote", market)
        source = YFinanceSource(max_batch=1, timeout=DEADLINE, session=yahoo.session)
        running = Running(Poller(settings(redis_server.url, 1), redis, source))
        try:
            await eventually(lambda: _all_priced(redis, [*GOOD, BAD]), "priced once")
            caplog.clear()
            # The last prices answered (polling goes on: newer than Redis showed).
            first = market.fail(
                lambda _: (429, "Too Many Requests", {"Content-Type": "text/plain"}), every=True
            )
            before = yahoo.counts["quote"]
            started = time.monotonic()
            await eventually(
                lambda: _all(redis, lambda q: q["stale"] is True), "every symbol stale"
            )
            await asyncio.sleep(3.0)
            during = yahoo.counts["quote"] - before
            elapsed = time.monotonic() - started
            # Polling on without a pause would be 3 requests every 50 ms (~60 a second);
            # yfinance may itself retry once (another crumb strategy) per attempt.
            assert during <= 10 * elapsed + 10, f"{during} requests in {elapsed:.1f}s of 429s"
            quotes = await stored(redis)
            assert {s: q["price"] for s, q in quotes.items()} == first
            messages = [r.getMessage() for r in condition_records(caplog)]
            batcher_lines = [m for m in messages if m.startswith("yfinance quotes")]
            assert len(batcher_lines) == 1, messages

            market.recover()
            await eventually(
                lambda: _all(redis, lambda q: q["stale"] is False), "every symbol fresh"
            )
        finally:
            await running.stop()
            await source.aclose()
            await redis.aclose()


async def test_crumb_and_cookie_failures_do_not_crash(
    redis_server: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Yahoo's crumb endpoint down (5xx) and quotes refused (401), then back.

    The failure path must really be taken: the crumb and quote routes were hit
    and failed, nothing was published meanwhile, and the batcher reported the
    401 as "unavailable" (a cookie/crumb refusal passes with time) once. Then the
    poller recovers without a restart.
    """
    caplog.set_level(logging.INFO)
    redis = Redis.from_url(redis_server.url)
    with fake_yahoo(tmp_path / "yf") as yahoo:
        yahoo.set("crumb", status=503, body="<html>down</html>")
        yahoo.set("quote", status=401, body={"finance": {"error": {"code": "Unauthorized"}}})
        source = YFinanceSource(max_batch=50, timeout=DEADLINE, session=yahoo.session)
        running = Running(Poller(settings(redis_server.url, 50), redis, source))
        try:
            failed = await eventually(
                lambda: _logged(caplog, "SourceUnavailableError"), "the failed batch reported"
            )
            assert "HTTP 401" in failed, failed
            assert yahoo.counts["crumb"] >= 1
            assert yahoo.counts["quote"] >= 1
            assert not running.task.done()
            assert await stored(redis) == {}  # nothing published from refused answers
            yahoo.reset()
            await eventually(lambda: _all_priced(redis, [*GOOD, BAD]), "priced after recovery")
            await eventually(lambda: _logged(caplog, "recovered"), "the recovery logged")
        finally:
            await running.stop()
            await source.aclose()
            await redis.aclose()


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> str | None:
    """The first condition line (failure or recovery) containing ``text``."""
    lines = [r.getMessage() for r in condition_records(caplog)]
    return next((m for m in lines if text in m), None)


async def _all_priced(redis: Redis, symbols: list[str]) -> dict[str, Any] | None:
    quotes = await stored(redis)
    if all(quotes.get(s, {}).get("price") is not None for s in symbols):
        return quotes
    return None


async def _stale(redis: Redis, symbol: str) -> dict[str, Any] | None:
    quotes = await stored(redis)
    return quotes if quotes.get(symbol, {}).get("stale") else None


async def _fresh(redis: Redis, symbol: str) -> dict[str, Any] | None:
    quotes = await stored(redis)
    return quotes if quotes.get(symbol, {}).get("stale") is False else None


async def _moved(redis: Redis, prices: dict[str, float]) -> dict[str, Any] | None:
    quotes = await stored(redis)
    return quotes if all(quotes[s]["price"] != p for s, p in prices.items()) else None


async def _all(redis: Redis, predicate: Callable[[dict[str, Any]], bool]) -> bool:
    quotes = await stored(redis)
    return bool(quotes) and all(predicate(q) for q in quotes.values())
