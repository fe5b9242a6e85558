"""HistoryService against the offline Yahoo seam: yfinance's real history() code runs."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from redis.asyncio import Redis

from tickerhub_api.history import (
    MAX_SPAN,
    VALID_INTERVALS,
    HistoryBadRequest,
    HistoryError,
    HistoryNotFound,
    HistoryService,
    HistoryUpstreamError,
    map_error,
)
from tickerhub_api.history_gate import OutboundGate
from tickerhub_core.keys import RedisKeys
from tickerhub_core.store import YahooRateLimit
from tickerhub_testkit.yahoo import FakeYahoo, chart_body, fake_yahoo, will_be_right_back_html
from tickerhub_yahoo import Kind, YahooError

START = datetime(2025, 8, 12, tzinfo=UTC)
END = datetime(2025, 8, 26, tzinfo=UTC)


@pytest.fixture
def yahoo(tmp_path: Path) -> Iterator[FakeYahoo]:
    with fake_yahoo(tmp_path / "yfinance-cache", known={"AAPL", "MSFT"}) as fake:
        yield fake


@pytest.fixture
def service(yahoo: FakeYahoo) -> HistoryService:
    return HistoryService(cache_ttl=60.0, timeout=3.0, session=yahoo.session)


def history_requests(yahoo: FakeYahoo) -> list[dict[str, str]]:
    """Chart requests made by history() itself (the timezone lookup uses range=1d)."""
    return [r.params for r in yahoo.requests if r.route == "chart" and "period1" in r.params]


# -- points ---------------------------------------------------------------------


async def test_points_from_the_recorded_chart(yahoo: FakeYahoo, service: HistoryService) -> None:
    points = await service.get("AAPL", START, END, "1d")

    assert len(points) == 10
    assert points[0] == {
        "date": "2025-08-12T04:00:00Z",  # the bar's New York midnight, in UTC
        "open": 228.00999450683594,
        "high": 230.8000030517578,
        "low": 227.07000732421875,
        "close": 229.64999389648438,
        "volume": 55626200,
    }
    assert points[-1]["date"] == "2025-08-25T04:00:00Z"
    assert points[-1]["close"] == 228.375
    assert [p["date"] for p in points] == sorted(p["date"] for p in points)
    for p in points:
        assert set(p) == {"date", "open", "high", "low", "close", "volume"}
        assert all(isinstance(p[k], float) for k in ("open", "high", "low", "close"))
        assert isinstance(p["volume"], int)

    (params,) = history_requests(yahoo)
    assert params["interval"] == "1d"
    assert int(params["period1"]) == int(START.timestamp())
    assert int(params["period2"]) == int(END.timestamp())


async def test_nan_rows_are_dropped(yahoo: FakeYahoo, service: HistoryService) -> None:
    def handler(req):
        symbol = req.url.split("?")[0].rsplit("/", 1)[-1]
        body = chart_body(symbol)
        quote = body["chart"]["result"][0]["indicators"]["quote"][0]
        quote["close"][3] = None  # 2025-08-15: price missing
        for key in quote:  # 2025-08-19: the whole bar missing
            quote[key][5] = None
        return 200, body, {}

    yahoo.handle("chart", handler)
    points = await service.get("AAPL", START, END, "1d")
    dates = [p["date"][:10] for p in points]
    assert len(points) == 8
    assert "2025-08-15" not in dates
    assert "2025-08-19" not in dates


async def test_defaults_ask_for_the_last_month_of_daily_bars(
    yahoo: FakeYahoo, service: HistoryService
) -> None:
    yahoo.handle("chart", lambda req: (200, chart_body("AAPL"), {}))
    before = datetime.now(UTC)
    points = await service.get("AAPL", None, None, "1d")
    assert len(points) == 10
    (params,) = history_requests(yahoo)
    period1, period2 = int(params["period1"]), int(params["period2"])
    assert abs(period2 - before.timestamp()) < 60
    assert period2 - period1 == int(timedelta(days=31).total_seconds())


# -- 404 / 422 -------------------------------------------------------------------


async def test_unknown_symbol_is_404(yahoo: FakeYahoo, service: HistoryService) -> None:
    with pytest.raises(HistoryNotFound) as info:
        await service.get("NOPE", START, END, "1d")
    assert info.value.status_code == 404
    assert history_requests(yahoo) == []  # found out by the timezone lookup already


async def test_no_data_in_range_is_404(yahoo: FakeYahoo, service: HistoryService) -> None:
    with pytest.raises(HistoryNotFound) as info:
        await service.get("AAPL", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 9), "1d")
    assert info.value.status_code == 404
    assert len(history_requests(yahoo)) == 1


@pytest.mark.parametrize(
    ("start", "end", "interval"),
    [
        (START, END, "7m"),
        (START, END, "1D"),
        (END, START, "1d"),
        (START, START, "1d"),
        (datetime(2025, 8, 1, tzinfo=UTC), datetime(2025, 8, 9, 0, 1, tzinfo=UTC), "1m"),
        (datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC), "5m"),
        (datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC), "90m"),
        (datetime(2023, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC), "1h"),
        ("tomorrow", None, "1d"),
    ],
    ids=[
        "bad-interval",
        "interval-case",
        "start-after-end",
        "start-equals-end",
        "1m-over-8-days",
        "5m-over-60-days",
        "90m-over-60-days",
        "1h-over-730-days",
        "start-in-future-no-end",
    ],
)
async def test_bad_requests_are_422_without_asking_yahoo(
    yahoo: FakeYahoo,
    service: HistoryService,
    start: datetime | str | None,
    end: datetime | None,
    interval: str,
) -> None:
    if start == "tomorrow":  # no end: it defaults to now, which is before start
        start = datetime.now(UTC) + timedelta(days=1)
    assert not isinstance(start, str)
    with pytest.raises(HistoryBadRequest) as info:
        await service.get("AAPL", start, end, interval)
    assert info.value.status_code == 422
    assert sum(yahoo.counts.values()) == 0


def test_valid_intervals_are_yfinances() -> None:
    """Our list is the one yfinance documents for ``history`` (no more, no fewer)."""
    from yfinance.scrapers.history import PriceHistory

    documented = re.search(r"Valid intervals: *(\S+)", PriceHistory.history.__doc__ or "")
    assert documented is not None, "yfinance no longer documents its intervals"
    assert tuple(documented.group(1).split(",")) == VALID_INTERVALS


@pytest.mark.parametrize("interval", VALID_INTERVALS)
async def test_every_valid_interval_reaches_yahoo(
    yahoo: FakeYahoo, service: HistoryService, interval: str
) -> None:
    """Accepted by our validation and by yfinance: a chart request with that interval."""
    span = MAX_SPAN.get(interval, timedelta(days=14))
    start = END - min(span, timedelta(days=7))
    # The recording holds daily bars only (no intraday tradingPeriods), so yfinance
    # may fail to parse the answer; what matters is that it was asked, not a 422.
    with contextlib.suppress(HistoryNotFound, HistoryUpstreamError):
        await service.get("AAPL", start, END, interval)
    asked = [p.get("interval") for p in history_requests(yahoo)]
    assert len(asked) == 1, asked
    # yfinance asks Yahoo for 15m bars when given 30m (and resamples them).
    assert asked[0] == {"30m": "15m"}.get(interval, interval)


# -- upstream failures -------------------------------------------------------------


async def test_429_is_503(yahoo: FakeYahoo, service: HistoryService) -> None:
    yahoo.set("chart", status=429, body="Too Many Requests")
    with pytest.raises(HistoryUpstreamError) as info:
        await service.get("AAPL", START, END, "1d")
    assert info.value.status_code == 503


async def test_429_on_history_after_timezone_is_known_is_503(
    yahoo: FakeYahoo, service: HistoryService
) -> None:
    await service.get("AAPL", START, END, "1d")  # timezone now cached
    yahoo.set("chart", status=429, body="Too Many Requests")
    with pytest.raises(HistoryUpstreamError) as info:
        await service.get("AAPL", START, END - timedelta(days=1), "1d")  # not cached
    timezone_lookups = [r for r in yahoo.requests if r.route == "chart" and "range" in r.params]
    assert len(timezone_lookups) == 1  # the 429 answered history's own request
    assert info.value.status_code == 503


async def test_yahoo_down_is_503_not_404(yahoo: FakeYahoo, service: HistoryService) -> None:
    yahoo.set("chart", status=500, body=will_be_right_back_html())
    with pytest.raises(HistoryUpstreamError) as info:
        await service.get("AAPL", START, END, "1d")
    assert info.value.status_code == 503


async def test_yahoo_5xx_is_503_like_in_the_poller(
    yahoo: FakeYahoo, service: HistoryService
) -> None:
    # A 5xx is Yahoo being unavailable (the poller backs off on it too), not a
    # bad answer: the shared classifier says so for both services.
    yahoo.set("chart", status=502, body="<html><body>Bad Gateway</body></html>")
    with pytest.raises(HistoryUpstreamError) as info:
        await service.get("AAPL", START, END, "1d")
    assert info.value.status_code == 503
    assert "HTTP 502" in str(info.value)


async def test_malformed_history_answer_is_502(yahoo: FakeYahoo, service: HistoryService) -> None:
    await service.get("MSFT", START, END, "1d")  # timezone cached; next failure is history's
    yahoo.set("chart", status=200, body='{"chart": {"result": [{"meta"')
    with pytest.raises(HistoryUpstreamError) as info:
        await service.get("MSFT", START, END - timedelta(days=1), "1d")
    assert info.value.status_code == 502


async def test_timeout_is_503(yahoo: FakeYahoo) -> None:
    service = HistoryService(timeout=0.3, session=yahoo.session)
    yahoo.set("chart", delay=5.0)
    with pytest.raises(HistoryUpstreamError) as info:
        await service.get("AAPL", START, END, "1d")
    assert info.value.status_code == 503


async def test_connection_error_is_503(yahoo: FakeYahoo, service: HistoryService) -> None:
    yahoo.set("chart", exc=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(HistoryUpstreamError) as info:
        await service.get("AAPL", START, END, "1d")
    assert info.value.status_code == 503


@pytest.mark.parametrize(
    ("kind", "error_class", "status"),
    [
        (Kind.RATE_LIMITED, HistoryUpstreamError, 503),
        (Kind.UNAVAILABLE, HistoryUpstreamError, 503),
        (Kind.NOT_FOUND, HistoryNotFound, 404),
        (Kind.INVALID, HistoryBadRequest, 422),
        (Kind.MALFORMED, HistoryUpstreamError, 502),
        (Kind.UNEXPECTED, HistoryUpstreamError, 502),
    ],
)
def test_each_failure_kind_gets_its_error_class_and_status(
    kind: Kind, error_class: type[HistoryError], status: int
) -> None:
    error = map_error(YahooError(kind, "why"))
    assert type(error) is error_class
    assert error.status_code == status
    assert str(error) == "why"


# -- caching and coalescing ------------------------------------------------------------


async def test_second_identical_call_makes_no_request(
    yahoo: FakeYahoo, service: HistoryService
) -> None:
    first = await service.get("AAPL", START, END, "1d")
    made = sum(yahoo.counts.values())

    second = await service.get("AAPL", START, END, "1d")
    assert second == first
    assert sum(yahoo.counts.values()) == made

    second[0]["close"] = -1.0  # callers get copies
    assert (await service.get("AAPL", START, END, "1d"))[0]["close"] == first[0]["close"]

    await service.get("AAPL", START, END, "1wk")  # other arguments: a new request
    assert len(history_requests(yahoo)) == 2


async def test_entries_expire_after_the_ttl(yahoo: FakeYahoo) -> None:
    service = HistoryService(cache_ttl=0.2, timeout=3.0, session=yahoo.session)
    await service.get("AAPL", START, END, "1d")
    await asyncio.sleep(0.5)  # past the TTL (only a lower bound on time: never flaky)
    await service.get("AAPL", START, END, "1d")
    assert len(history_requests(yahoo)) == 2


async def test_transient_errors_are_not_cached(yahoo: FakeYahoo, service: HistoryService) -> None:
    yahoo.set("chart", status=503, body="Service Unavailable", times=2)
    with pytest.raises(HistoryUpstreamError):
        await service.get("AAPL", START, END, "1d")
    assert len(await service.get("AAPL", START, END, "1d")) == 10


async def test_concurrent_identical_requests_share_one_fetch(
    yahoo: FakeYahoo, service: HistoryService
) -> None:
    results = await asyncio.gather(*(service.get("AAPL", START, END, "1d") for _ in range(5)))
    assert all(r == results[0] for r in results)
    assert len(history_requests(yahoo)) == 1
    assert yahoo.counts["chart"] == 2  # one timezone lookup + one history request


async def test_one_caller_leaving_does_not_cancel_the_shared_fetch(
    yahoo: FakeYahoo, service: HistoryService
) -> None:
    yahoo.set("chart", delay=0.3)  # both callers are waiting when one leaves
    leaving = asyncio.create_task(service.get("AAPL", START, END, "1d"))
    staying = asyncio.create_task(service.get("AAPL", START, END, "1d"))
    await asyncio.sleep(0.1)
    leaving.cancel()
    assert len(await staying) == 10
    assert leaving.cancelled()
    assert len(history_requests(yahoo)) == 1


async def test_cache_is_bounded(yahoo: FakeYahoo) -> None:
    service = HistoryService(cache_ttl=60.0, timeout=3.0, session=yahoo.session, max_entries=2)
    for days in (1, 2, 3):
        await service.get("AAPL", START, END + timedelta(days=days), "1d")
    assert len(history_requests(yahoo)) == 3
    await service.get("AAPL", START, END + timedelta(days=3), "1d")  # newest: cached
    assert len(history_requests(yahoo)) == 3
    await service.get("AAPL", START, END + timedelta(days=1), "1d")  # oldest: evicted
    assert len(history_requests(yahoo)) == 4


def test_history_loads_yfinance_only_on_its_first_request() -> None:
    """An api that never serves history never imports yfinance and pandas (tens of MiB)."""
    code = (
        "import sys\n"
        "import tickerhub_api.history as h\n"
        "h.HistoryService()\n"
        "print(sorted(m for m in ('yfinance', 'pandas') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


# -- what keeps history from flooding Yahoo (issue 14 item 3) ------------------------


class FrozenClock:
    """Time that moves only when told: the per-second cap then allows exactly its burst."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chart_requests(yahoo: FakeYahoo) -> int:
    return yahoo.counts["chart"]


def symbols_asked(yahoo: FakeYahoo) -> set[str]:
    return {r.url.split("?")[0].rsplit("/", 1)[-1] for r in yahoo.requests if r.route == "chart"}


async def test_not_found_answers_are_cached_too(yahoo: FakeYahoo, service: HistoryService) -> None:
    with pytest.raises(HistoryNotFound):
        await service.get("NOPE", START, END, "1d")
    made = chart_requests(yahoo)
    assert made > 0
    for _ in range(19):
        with pytest.raises(HistoryNotFound):
            await service.get("NOPE", START, END, "1d")
    assert chart_requests(yahoo) == made  # answered from the cache


async def test_not_found_answers_expire(yahoo: FakeYahoo) -> None:
    service = HistoryService(timeout=3.0, session=yahoo.session, negative_ttl=0.2)
    with pytest.raises(HistoryNotFound):
        await service.get("NOPE", START, END, "1d")
    made = chart_requests(yahoo)
    await asyncio.sleep(0.5)  # past the TTL (a lower bound on time only)
    with pytest.raises(HistoryNotFound):
        await service.get("NOPE", START, END, "1d")
    assert chart_requests(yahoo) == 2 * made


async def test_distinct_symbols_are_capped_per_second(yahoo: FakeYahoo) -> None:
    clock = FrozenClock()
    gate = OutboundGate(max_concurrent=4, per_second=2.0, clock=clock)
    service = HistoryService(timeout=3.0, session=yahoo.session, gate=gate)
    refused = []
    for i in range(200):
        try:
            await service.get(f"NOPE{i}", START, END, "1d")
        except HistoryNotFound:
            pass
        except HistoryUpstreamError as exc:
            refused.append(exc)
    assert symbols_asked(yahoo) == {f"NOPE{i}" for i in range(4)}  # the burst, then nothing
    assert len(refused) == 196
    assert {(e.status_code, e.retry_after) for e in refused} == {(503, 1)}
    clock.now += 1.0  # two more tokens
    for i in range(200, 210):
        with contextlib.suppress(HistoryNotFound, HistoryUpstreamError):
            await service.get(f"NOPE{i}", START, END, "1d")
    assert len(symbols_asked(yahoo)) == 6


async def test_concurrent_fetches_beyond_the_cap_fail_fast(yahoo: FakeYahoo) -> None:
    yahoo.set("chart", delay=0.5)  # Yahoo slow: the first four hold their slots
    gate = OutboundGate(max_concurrent=4, per_second=1000.0)
    service = HistoryService(timeout=3.0, session=yahoo.session, gate=gate)
    results = await asyncio.gather(
        *(service.get("AAPL", START, END + timedelta(days=i), "1d") for i in range(10)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, HistoryUpstreamError)]
    assert len(refused) == 6
    assert all(r.status_code == 503 and r.retry_after == 1 for r in refused)
    assert sum(isinstance(r, list) for r in results) == 4
    assert len(history_requests(yahoo)) == 4


@pytest.mark.integration
async def test_a_429_holds_every_fetch_and_tells_the_poller(
    yahoo: FakeYahoo, redis_server: Any
) -> None:
    redis = Redis.from_url(redis_server.url)
    shared = YahooRateLimit(redis, RedisKeys())
    gate = OutboundGate(max_concurrent=4, per_second=1000.0, shared=shared)
    service = HistoryService(timeout=3.0, session=yahoo.session, gate=gate)
    try:
        yahoo.set("chart", status=429, body="Too Many Requests")
        with pytest.raises(HistoryUpstreamError) as first:
            await service.get("AAPL", START, END, "1d")
        assert (first.value.status_code, first.value.retry_after) == (503, 60)
        made = chart_requests(yahoo)
        yahoo.set("chart", status=200, body=None)  # Yahoo fine again: still held
        for i in range(20):
            with pytest.raises(HistoryUpstreamError, match="rate limiting") as held:
                await service.get("MSFT", START, END + timedelta(days=i), "1d")
            assert (held.value.retry_after or 0) >= 59
        assert chart_requests(yahoo) == made
        assert 59 < await shared.remaining() <= 60  # the poller sees the hold too
    finally:
        await redis.aclose()


@pytest.mark.integration
async def test_a_rate_limit_the_poller_saw_holds_history(
    yahoo: FakeYahoo, redis_server: Any
) -> None:
    redis = Redis.from_url(redis_server.url)
    shared = YahooRateLimit(redis, RedisKeys())
    service = HistoryService(
        timeout=3.0,
        session=yahoo.session,
        gate=OutboundGate(max_concurrent=4, per_second=1000.0, shared=shared),
    )
    try:
        await shared.mark(30)  # what the poller does on a 429
        with pytest.raises(HistoryUpstreamError) as held:
            await service.get("AAPL", START, END, "1d")
        assert (held.value.status_code, held.value.retry_after) in {(503, 30), (503, 29)}
        assert chart_requests(yahoo) == 0
        await redis.delete("yahoo:rate-limited")  # the hold is over
        assert len(await service.get("AAPL", START, END, "1d")) == 10
    finally:
        await redis.aclose()


@pytest.mark.integration
@pytest.mark.parametrize("policy", ["held", "any"])
def test_history_symbols_policy_over_rest(yahoo: FakeYahoo, redis_server: Any, policy: str) -> None:
    from fastapi.testclient import TestClient

    from tickerhub_api.app import create_app
    from tickerhub_api.settings import ApiSettings
    from tickerhub_testkit.producer import Producer
    from tickerhub_testkit.wait import eventually_blocking

    async def seed() -> None:
        client = Redis.from_url(redis_server.url)
        await Producer(client).publish({"AAPL": {"price": 1.0}})
        await client.aclose()

    asyncio.run(seed())
    settings = ApiSettings(_env_file=None, redis_url=redis_server.url, history_symbols=policy)
    history = HistoryService(timeout=3.0, session=yahoo.session)
    with TestClient(create_app(settings, history=history)) as client:
        eventually_blocking(lambda: client.get("/readyz").status_code == 200, "ready", limit=10)
        params = {"start": "2025-08-12", "end": "2025-08-26"}
        assert client.get("/tickers/AAPL/history", params=params).status_code == 200
        made = chart_requests(yahoo)
        answer = client.get("/tickers/MSFT/history", params=params)  # Yahoo knows it; we do not
        if policy == "held":
            assert answer.status_code == 404
            assert "not tracked by this hub" in answer.json()["detail"]
            assert chart_requests(yahoo) == made
        else:
            assert answer.status_code == 200
            assert chart_requests(yahoo) > made


@pytest.mark.integration
def test_refusals_carry_retry_after_over_rest(yahoo: FakeYahoo, redis_server: Any) -> None:
    from fastapi.testclient import TestClient

    from tickerhub_api.app import create_app
    from tickerhub_api.settings import ApiSettings
    from tickerhub_testkit.wait import eventually_blocking

    settings = ApiSettings(_env_file=None, redis_url=redis_server.url, history_symbols="any")
    gate = OutboundGate(max_concurrent=1, per_second=1.0, clock=FrozenClock())
    history = HistoryService(timeout=3.0, session=yahoo.session, gate=gate)
    with TestClient(create_app(settings, history=history)) as client:
        eventually_blocking(lambda: client.get("/readyz").status_code == 200, "ready", limit=10)
        assert client.get("/tickers/NOPE1/history").status_code == 404
        refused = client.get("/tickers/NOPE2/history")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert "over their rate" in refused.json()["detail"]
