"""Pure logic of the poller: settings, diffing, snapshot, batching, staleness, news merge."""

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from tickerhub_core.models import NewsItem, Quote
from tickerhub_core.settings import load_settings
from tickerhub_poller.batcher import BatchFailedError, QuoteBatcher
from tickerhub_poller.diff import diff_quote
from tickerhub_poller.news import merge_news
from tickerhub_poller.settings import PollerSettings
from tickerhub_poller.snapshot import Snapshot
from tickerhub_poller.sources.base import NoDataError, RateLimitedError, SourceError
from tickerhub_poller.sources.simulated import SimulatedSource
from tickerhub_poller.tickers import TickerTask

# -- settings ---------------------------------------------------------------


def test_settings_parse_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKERS", "aapl, msft,AAPL")
    monkeypatch.setenv("POLL_FREQ", "0.25")
    monkeypatch.setenv("SOURCE", "simulated")
    settings = PollerSettings(_env_file=None)
    assert settings.tickers == ["AAPL", "MSFT"]
    assert settings.poll_freq == 0.25
    assert settings.source == "simulated"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TICKERS", "", "invalid setting TICKERS: must name at least one symbol"),
        ("TICKERS", "AAPL,MS FT", "invalid setting TICKERS: not a valid ticker symbol: 'MS FT'"),
        ("POLL_FREQ", "0", "invalid setting POLL_FREQ: Input should be greater than 0"),
        ("POLL_FREQ", "-1", "invalid setting POLL_FREQ"),
        ("SOURCE", "bloomberg", "invalid setting SOURCE"),
        ("REDIS_URL", "localhost:6379", "invalid setting REDIS_URL: must start with redis://"),
        ("KEY_PREFIX", "a b", "invalid setting KEY_PREFIX"),
    ],
)
def test_bad_settings_exit_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str,
    expected: str,
) -> None:  # fmt: skip
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        load_settings(PollerSettings, "poller", _env_file=None)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"poller: {expected}")


# -- diff and snapshot --------------------------------------------------------


def test_diff_quote_reports_changed_fields_only() -> None:
    old = {"symbol": "A", "seq": 3, "price": 1.0, "volume": 10}
    assert diff_quote(old, {"symbol": "A", "price": 1.0, "volume": 10}) == {}
    assert diff_quote(old, {"symbol": "A", "price": 1.5, "volume": 10}) == {"price": 1.5}
    assert diff_quote(old, {"symbol": "A", "price": 1.0, "stale": True}) == {"stale": True}
    assert diff_quote(None, {"symbol": "A", "seq": 9, "price": 2.0}) == {
        "symbol": "A",
        "price": 2.0,
    }


def test_snapshot_prepares_one_diff_for_everything_pending() -> None:
    snap = Snapshot()
    snap.load(4, {"A": {"symbol": "A", "seq": 2, "price": 1.0, "volume": 5}})
    snap.update({"symbol": "A", "price": 1.0, "volume": 6})
    snap.update({"symbol": "B", "price": 7.0})
    prepared = snap.prepare()
    assert prepared is not None
    assert prepared.seq == 5
    msg = orjson.loads(prepared.message)
    assert msg["type"] == "diff"
    assert msg["seq"] == 5
    assert msg["data"] == {
        "A": {"symbol": "A", "seq": 5, "volume": 6},
        "B": {"symbol": "B", "seq": 5, "price": 7.0},
    }
    assert orjson.loads(prepared.encoded["A"]) == {
        "symbol": "A",
        "seq": 5,
        "price": 1.0,
        "volume": 6,
    }
    snap.commit(prepared)
    assert snap.seq == 5
    assert snap.published["B"] == {"symbol": "B", "seq": 5, "price": 7.0}
    assert snap.prepare() is None


def test_unchanged_quotes_publish_nothing() -> None:
    snap = Snapshot()
    snap.load(1, {"A": {"symbol": "A", "seq": 1, "price": 1.0}})
    snap.update({"symbol": "A", "price": 1.0})
    assert snap.prepare() is None
    assert snap.seq == 1


def test_failed_write_restores_pending_without_overwriting_newer_data() -> None:
    snap = Snapshot()
    snap.update({"symbol": "A", "price": 1.0})
    snap.update({"symbol": "B", "price": 2.0})
    prepared = snap.prepare()
    assert prepared is not None
    snap.update({"symbol": "A", "price": 3.0})  # arrived while the write was in flight
    snap.restore(prepared)
    assert snap.pending == {"A": {"symbol": "A", "price": 3.0}, "B": {"symbol": "B", "price": 2.0}}
    assert snap.seq == 0


# -- simulated source ---------------------------------------------------------


async def test_simulated_walk_is_deterministic_per_symbol() -> None:
    one, two = SimulatedSource(seed=7), SimulatedSource(seed=7)
    a = [await one.fetch_quotes(["AAPL", "MSFT"]) for _ in range(5)]
    b = [await two.fetch_quotes(["AAPL"]) for _ in range(5)]
    other = await SimulatedSource(seed=8).fetch_quotes(["AAPL"])

    def price(quotes: Mapping[str, Quote | SourceError]) -> float | None:
        quote = quotes["AAPL"]
        assert not isinstance(quote, SourceError)
        return quote["price"]

    assert [price(q) for q in a] == [price(q) for q in b]
    assert len({price(q) for q in a}) > 1
    assert price(other) != price(a[0])


async def test_flat_simulated_walk_never_changes() -> None:
    source = SimulatedSource(seed=1, volatility=0)
    first = await source.fetch_quotes(["X"])
    for _ in range(3):
        assert await source.fetch_quotes(["X"]) == first
    assert await SimulatedSource(seed=1, volatility=0).fetch_quotes(["X"]) == first


# -- batcher --------------------------------------------------------------------


class RecordingSource:
    """A source that answers from a script of outcomes and records each call's symbols."""

    name = "recording"

    def __init__(self, outcomes: list[object] | None = None, max_batch: int = 50) -> None:
        self.max_batch = max_batch
        self.calls: list[list[str]] = []
        self._outcomes = outcomes or []
        self._sim = SimulatedSource(seed=3)

    async def fetch_quotes(self, symbols):
        self.calls.append(list(symbols))
        outcome = self._outcomes.pop(0) if self._outcomes else None
        if isinstance(outcome, SourceError):
            raise outcome
        result = await self._sim.fetch_quotes(symbols)
        if isinstance(outcome, dict):
            result.update(outcome)
        return result

    async def fetch_news(self, symbol, count):
        return []

    async def aclose(self) -> None:
        pass


async def test_batcher_coalesces_concurrent_requests_into_batches() -> None:
    source = RecordingSource(max_batch=50)
    batcher = QuoteBatcher(source, batch_size=50, window=0.01)
    symbols = [f"S{i}" for i in range(500)]
    quotes = await asyncio.gather(*(batcher.get(s) for s in symbols))
    assert [q["symbol"] for q in quotes] == symbols
    assert len(source.calls) == 10
    assert sorted(s for call in source.calls for s in call) == sorted(symbols)


async def test_batch_failure_gives_every_symbol_one_shared_retry_delay() -> None:
    source = RecordingSource([RateLimitedError("429")])
    batcher = QuoteBatcher(source, batch_size=50, window=0.0)
    results = await asyncio.gather(*(batcher.get(s) for s in ("A", "B", "C")),
                                   return_exceptions=True)  # fmt: skip
    failures = [r for r in results if isinstance(r, BatchFailedError)]
    assert len(failures) == len(results)
    assert len({f.retry_after for f in failures}) == 1
    assert isinstance(failures[0].cause, RateLimitedError)
    # The next batch waits out the rate limit, then succeeds.
    quote = await batcher.get("A")
    assert quote["symbol"] == "A"


async def test_symbol_without_data_fails_alone() -> None:
    source = RecordingSource([{"B": NoDataError("B")}])
    batcher = QuoteBatcher(source, window=0.0)
    a, b = await asyncio.gather(batcher.get("A"), batcher.get("B"), return_exceptions=True)
    assert not isinstance(a, BaseException)
    assert a["symbol"] == "A"
    assert isinstance(b, NoDataError)


async def test_a_source_bug_becomes_a_batch_failure_not_a_crash() -> None:
    source = RecordingSource([ZeroDivisionError()])

    async def broken(symbols):
        raise ZeroDivisionError

    source.fetch_quotes = broken  # type: ignore[method-assign]
    batcher = QuoteBatcher(source, window=0.0)
    with pytest.raises(BatchFailedError):
        await batcher.get("A")


# -- ticker task: staleness -------------------------------------------------------


async def test_ticker_is_marked_stale_after_n_misses_and_fresh_again() -> None:
    errors = [SourceError("down")] * 3
    source = RecordingSource([None, *errors, None])
    snapshot = Snapshot()
    notified = []
    batcher = QuoteBatcher(source, window=0.0)
    task = TickerTask("AAPL", batcher, snapshot, lambda: notified.append(1), 1.0, stale_after=3)

    await task.poll_once()
    good = snapshot.prepare()
    assert good is not None
    snapshot.commit(good)
    assert snapshot.published["AAPL"]["stale"] is False

    for _ in range(2):
        await task.poll_once()
    assert snapshot.prepare() is None  # two misses: still fresh, nothing to publish
    await task.poll_once()
    stale = snapshot.prepare()
    assert stale is not None
    assert orjson.loads(stale.message)["data"]["AAPL"] == {
        "symbol": "AAPL",
        "seq": 2,
        "stale": True,
    }
    snapshot.commit(stale)
    assert snapshot.published["AAPL"]["price"] == good.quotes["AAPL"]["price"]  # last good kept

    await task.poll_once()
    fresh = snapshot.prepare()
    assert fresh is not None
    assert orjson.loads(fresh.message)["data"]["AAPL"]["stale"] is False
    assert task.misses == 0


async def test_batch_failure_delay_is_honoured_by_the_ticker() -> None:
    source = RecordingSource([SourceError("boom")])
    task = TickerTask("A", QuoteBatcher(source, window=0.0), Snapshot(), lambda: None, 0.1, 3)
    delay = await task.poll_once()
    assert delay >= 0.1


# -- news ----------------------------------------------------------------------------


def test_merge_news_unions_tickers_of_the_same_story() -> None:
    item: NewsItem = {"id": "n1", "title": "t", "publisher": None, "link": None,
            "published_at": "2026-11-25T10:00:00Z", "tickers": []}  # fmt: skip
    merged = merge_news([[{**item, "tickers": ["AAPL"]}], [{**item, "tickers": ["MSFT", "AAPL"]}]])
    assert len(merged) == 1
    assert merged[0]["tickers"] == ["AAPL", "MSFT"]


async def test_batcher_reports_each_rate_limit_pause() -> None:
    pauses: list[float] = []
    source = RecordingSource([RateLimitedError("429"), SourceError("500")])
    batcher = QuoteBatcher(source, window=0.0, on_rate_limited=pauses.append)
    with pytest.raises(BatchFailedError) as first:
        await batcher.get("A")
    assert pauses == [first.value.retry_after]
    with pytest.raises(BatchFailedError):
        await batcher.get("A")  # not a rate limit: not reported
    assert len(pauses) == 1


@pytest.mark.integration
async def test_a_rate_limit_is_shared_through_redis_for_the_api(redis_server) -> None:
    from redis.asyncio import Redis

    from tickerhub_core.store import YahooRateLimit
    from tickerhub_poller.service import Poller

    redis = Redis.from_url(redis_server.url)
    settings = PollerSettings(
        _env_file=None, redis_url=redis_server.url, tickers="AAPL", stream="off"
    )
    poller = Poller(settings, redis, RecordingSource([RateLimitedError("429")]))
    task = asyncio.create_task(poller.run())
    try:
        shared = YahooRateLimit(redis, settings.keys)
        for _ in range(500):
            if await shared.remaining() > 0:
                break
            await asyncio.sleep(0.02)
        assert 0 < await shared.remaining() <= 300  # the batcher's pause, at least 1 s
        assert await redis.get("yahoo:rate-limited") is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()


def test_news_round_asks_every_ticker_then_symbols_on_demand_in_turn() -> None:
    from tickerhub_poller.news import news_round

    static, on_demand = ["AAPL", "MSFT"], ["A", "B", "C", "D", "E"]
    seen: list[list[str]] = []
    offset = 0
    for _ in range(5):
        symbols, offset = news_round(static, on_demand, budget=5, offset=offset)
        assert symbols[:2] == static
        seen.append(symbols[2:])
    assert seen == [
        ["A", "B", "C"],
        ["D", "E", "A"],
        ["B", "C", "D"],
        ["E", "A", "B"],
        ["C", "D", "E"],
    ]
    # Room for all: all, every round; no room: TICKERS only, whatever the budget says.
    assert news_round(static, on_demand, budget=50, offset=3) == ([*static, *on_demand], 0)
    assert news_round(static, on_demand, budget=1, offset=3) == (static, 0)
    assert news_round(static, [], budget=5, offset=3) == (static, 0)
    # The list shrank under the offset: it wraps instead of skipping or failing.
    assert news_round([], ["A", "B"], budget=1, offset=7) == (["B"], 0)


async def test_news_poller_asks_for_symbols_on_demand_within_its_budget() -> None:
    from tickerhub_poller.news import NewsPoller

    asked: list[str] = []

    class Source(RecordingSource):
        async def fetch_news(self, symbol, count):
            asked.append(symbol)
            return [
                {
                    "id": f"n-{symbol}",
                    "title": symbol,
                    "publisher": None,
                    "link": None,
                    "published_at": "2026-11-26T10:00:00Z",
                    "tickers": [symbol],
                }
            ]

    class Store:
        async def add(self, items, max_items):
            return list(items)

    wanted = ["IBM", "AAPL", "ORCL", "SAP"]  # AAPL is a ticker too: asked once
    store: Any = Store()  # stands in for NewsStore.add only
    poller = NewsPoller(
        Source(max_batch=50), store, ["AAPL"], 60.0, 5, 100, on_demand=lambda: wanted,
        max_symbols=3,
    )  # fmt: skip
    new = await poller.poll_once()
    assert sorted(asked) == ["AAPL", "IBM", "ORCL"]
    assert {item["id"] for item in new} == {"n-AAPL", "n-IBM", "n-ORCL"}
    asked.clear()
    await poller.poll_once()
    assert sorted(asked) == ["AAPL", "IBM", "SAP"]


async def test_a_closed_batcher_serves_again() -> None:
    """A poller deposed mid-batch closes its batcher, then leads (and polls) again."""
    source = RecordingSource(max_batch=50)
    batcher = QuoteBatcher(source, batch_size=50, window=0.05)
    pending = asyncio.ensure_future(batcher.get("AAPL"))  # waits for the window
    await asyncio.sleep(0)
    await batcher.aclose()
    await asyncio.sleep(0)
    assert pending.cancelled()
    quote = await asyncio.wait_for(batcher.get("MSFT"), timeout=5)
    assert quote["symbol"] == "MSFT"
    assert source.calls == [["MSFT"]]
    await batcher.aclose()
