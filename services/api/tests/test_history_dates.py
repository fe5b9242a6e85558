"""Any dates a client can send to /tickers/{s}/history get a 2xx/4xx, never a 500 (issue 14, 8).

``start=0001-01-01T00:00:00+14:00``, ``end=9999-12-31T23:59:59-14:00`` and
``end=0001-01-02&interval=3mo`` used to overflow while converting to UTC or
subtracting the default span. Hypothesis searches the query space: the pure
range check, and the route over the offline Yahoo (yfinance's real code runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tickerhub_api.app import create_app
from tickerhub_api.history import (
    EARLIEST,
    LATEST,
    VALID_INTERVALS,
    HistoryBadRequest,
    HistoryService,
    resolve_range,
)
from tickerhub_api.history_gate import OutboundGate
from tickerhub_api.settings import ApiSettings
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.wait import eventually_blocking
from tickerhub_testkit.yahoo import fake_yahoo

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)

offsets = st.one_of(
    st.none(),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
        lambda m: timezone(timedelta(minutes=m))
    ),
)
moments = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    offsets,
)
extremes = st.sampled_from(
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
        datetime(1, 1, 2),
        datetime(9999, 12, 31, 23, 59, 59),
        datetime(1899, 12, 31, 23, 59, 59, tzinfo=UTC),
        EARLIEST,
        LATEST,
    ]
)
dates = st.one_of(st.none(), moments, extremes)
intervals = st.one_of(st.sampled_from(VALID_INTERVALS), st.text(max_size=8))


@given(start=dates, end=dates, interval=intervals)
@settings(max_examples=500, deadline=None)
def test_resolve_range_returns_a_utc_range_or_refuses_with_422(
    start: datetime | None, end: datetime | None, interval: str
) -> None:
    try:
        first, last = resolve_range(start, end, interval, NOW)
    except HistoryBadRequest:  # the route answers it with 422
        return
    assert first.tzinfo is UTC
    assert last.tzinfo is UTC
    assert EARLIEST <= first < last <= LATEST


@pytest.mark.parametrize(
    "params",
    [
        {"start": "0001-01-01T00:00:00+14:00"},
        {"end": "9999-12-31T23:59:59-14:00"},
        {"end": "0001-01-02", "interval": "3mo"},
        {"start": "0001-01-01", "end": "9999-12-31"},
    ],
)
def test_the_reported_extremes_are_422(params: dict[str, str]) -> None:
    start = datetime.fromisoformat(params["start"]) if "start" in params else None
    end = datetime.fromisoformat(params["end"]) if "end" in params else None
    with pytest.raises(HistoryBadRequest, match="between 1900-01-01 and 2200-01-01") as refused:
        resolve_range(start, end, params.get("interval", "1d"), NOW)
    assert refused.value.status_code == 422


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, _session_redis: Any) -> Iterator[TestClient]:
    _session_redis.start()
    _session_redis.flush()

    async def seed() -> None:
        redis = Redis.from_url(_session_redis.url)
        await Producer(redis).publish({"AAPL": {"price": 1.0}})
        await redis.aclose()

    asyncio.run(seed())
    cache = Path(tmp_path_factory.mktemp("yfinance-cache"))
    with fake_yahoo(cache, known={"AAPL"}) as yahoo:
        service = HistoryService(
            timeout=3.0,
            session=yahoo.session,
            gate=OutboundGate(max_concurrent=4, per_second=10_000.0),
        )
        app = create_app(ApiSettings(_env_file=None, redis_url=_session_redis.url), history=service)
        with TestClient(app) as test_client:
            eventually_blocking(
                lambda: test_client.get("/readyz").status_code == 200, "ready", limit=10
            )
            yield test_client


def as_query(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@pytest.mark.integration
@given(start=dates, end=dates, interval=intervals)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_the_route_never_answers_500(
    client: TestClient, start: datetime | None, end: datetime | None, interval: str
) -> None:
    params = {
        k: v
        for k, v in {"start": as_query(start), "end": as_query(end), "interval": interval}.items()
        if v is not None
    }
    response = client.get("/tickers/AAPL/history", params=params)
    assert response.status_code in (200, 404, 422), (params, response.text)
    assert isinstance(response.json(), list | dict)


@pytest.mark.integration
@pytest.mark.parametrize(
    "query",
    [
        "start=0001-01-01T00:00:00%2B14:00",
        "end=9999-12-31T23:59:59-14:00",
        "end=0001-01-02&interval=3mo",
    ],
)
def test_the_reported_queries_are_422_over_rest(client: TestClient, query: str) -> None:
    response = client.get(f"/tickers/AAPL/history?{query}")
    assert response.status_code == 422, response.text
    assert "between 1900-01-01 and 2200-01-01" in response.json()["detail"]
