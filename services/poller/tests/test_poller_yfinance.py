"""The whole poller (ticker tasks, batcher, publisher) over yfinance's real parsing and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis

from tickerhub_poller.service import Poller
from tickerhub_poller.settings import PollerSettings
from tickerhub_poller.sources.yfinance import YFinanceSource
from tickerhub_testkit.yahoo import FakeYahoo, fake_yahoo

pytestmark = pytest.mark.integration

SYMBOLS = [f"T{i:03d}" for i in range(500)]


@pytest.fixture
def yahoo(tmp_path: Path) -> Iterator[FakeYahoo]:
    with fake_yahoo(tmp_path / "yf") as fake:
        yield fake


def settings(url: str, **overrides: Any) -> PollerSettings:
    base: dict[str, Any] = {
        "redis_url": url,
        "tickers": SYMBOLS,
        "poll_freq": 3600,
        "news_interval": 0,
        "lease_ttl": 60,  # parts driven by hand below: the lease must outlast the test
    }
    return PollerSettings(_env_file=None, **{**base, **overrides})


async def one_cycle(poller: Poller) -> None:
    """Every ticker polls once, concurrently, as their tasks do at start."""
    assert await poller.leadership.try_take()  # only the lease holder may write
    await poller.publisher.load()
    await asyncio.gather(*(t.poll_once() for t in poller.tickers))
    await poller.publisher.flush()


async def test_500_tickers_cost_10_quote_requests_a_cycle(yahoo: FakeYahoo, redis_server) -> None:
    redis = Redis.from_url(redis_server.url)
    source = YFinanceSource(max_batch=50, timeout=5, session=yahoo.session)
    poller = Poller(settings(redis_server.url), redis, source)
    try:
        await one_cycle(poller)
        # The first cycle also fetches yfinance's cookie and crumb once.
        assert dict(yahoo.counts) == {"cookie": 1, "crumb": 1, "quote": 10}
        assert [len(batch) for batch in yahoo.quote_symbols()] == [50] * 10
        assert sorted(s for batch in yahoo.quote_symbols() for s in batch) == SYMBOLS
        assert await redis.hlen("prices") == 500
        assert await redis.get("prices:seq") == b"1"  # one diff for the whole cycle
        t123 = await redis.hget("prices", "T123")
        assert t123 is not None
        assert orjson.loads(t123)["name"] == "T123 Corp."  # each symbol its own answer

        yahoo.clear_counts()
        await asyncio.gather(*(t.poll_once() for t in poller.tickers))
        await poller.publisher.flush()
        assert dict(yahoo.counts) == {"quote": 10}
        assert await redis.get("prices:seq") == b"1"  # same answers: nothing published

        # A caller passing more than max_batch symbols at once is split, not refused.
        yahoo.clear_counts()
        results = await source.fetch_quotes(SYMBOLS)
        assert dict(yahoo.counts) == {"quote": 10}
        assert [len(batch) for batch in yahoo.quote_symbols()] == [50] * 10
        assert sorted(results) == SYMBOLS
        assert not [q for q in results.values() if isinstance(q, Exception)]
    finally:
        await source.aclose()
        await redis.aclose()


async def test_restart_over_yfinance_publishes_nothing_spurious(
    yahoo: FakeYahoo, redis_server
) -> None:
    redis = Redis.from_url(redis_server.url)
    symbols = ["AAPL", "MSFT", "T001"]
    for _ in range(2):  # the second Poller is the restarted process
        source = YFinanceSource(max_batch=50, timeout=5, session=yahoo.session)
        poller = Poller(settings(redis_server.url, tickers=symbols), redis, source)
        await one_cycle(poller)
        await poller.leadership.release()  # as a stopping poller does
        await source.aclose()
    assert await redis.get("prices:seq") == b"1"
    prices = cast("dict[bytes, bytes]", await redis.hgetall("prices"))  # no decode_responses
    stored = {k.decode(): orjson.loads(v) for k, v in prices.items()}
    assert stored["AAPL"]["price"] == 225.44  # the recorded answer, parsed by yfinance
    assert stored["AAPL"]["stale"] is False
    await redis.aclose()
