"""REST routes, in process, over a real redis-server (history through a fake service)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from tickerhub_api.app import create_app
from tickerhub_api.settings import ApiSettings
from tickerhub_core.keys import RedisKeys
from tickerhub_core.store import NewsStore, SnapshotStore
from tickerhub_testkit.wait import eventually_blocking

from .conftest import Producer

pytestmark = pytest.mark.integration


class FakeHistory:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def get(
        self, symbol: str, start: datetime | None, end: datetime | None, interval: str
    ) -> list[dict[str, Any]]:
        from tickerhub_api.history import HistoryBadRequest, HistoryNotFound

        self.calls.append((symbol, start, end, interval))
        if interval == "7x":
            raise HistoryBadRequest("invalid interval '7x'")
        if symbol == "NODATA":
            raise HistoryNotFound("no data for NODATA")
        return [
            {
                "date": "2026-01-02T00:00:00Z",
                "open": 1.0,
                "high": 2.0,
                "low": 0.5,
                "close": 1.5,
                "volume": 100,
            }
        ]


def seed(url: str) -> None:
    async def run() -> None:
        redis = Redis.from_url(url)
        try:
            producer = Producer(redis)
            await producer.publish({"AAPL": {"price": 1.0}, "BRK-B": {"price": 2.0}})
            await producer.publish({"AAPL": {"price": 1.5}})
            news = NewsStore(redis, RedisKeys())
            await news.add(
                [
                    {
                        "id": f"n{i}",
                        "title": f"story {i}",
                        "publisher": "Wire",
                        "link": None,
                        "published_at": f"2026-01-0{i}T00:00:00Z",
                        "tickers": ["AAPL"] if i % 2 else ["MSFT"],
                    }
                    for i in range(1, 6)
                ],
                max_items=50,
            )
        finally:
            await redis.aclose()

    asyncio.run(run())


@pytest.fixture
def history() -> FakeHistory:
    return FakeHistory()


@pytest.fixture
def client(redis_server: Any, history: FakeHistory) -> Iterator[TestClient]:
    seed(redis_server.url)
    app = create_app(ApiSettings(redis_url=redis_server.url), history=history)
    with TestClient(app) as client:
        eventually_blocking(
            lambda: client.get("/readyz").status_code == 200,
            "readyz 200",
            limit=10,
            detail=lambda: str(client.get("/readyz").json()),
        )
        yield client


def test_tickers(client: TestClient) -> None:
    response = client.get("/tickers")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"AAPL", "BRK-B"}
    assert body["AAPL"]["price"] == 1.5
    assert body["AAPL"]["seq"] == 2
    assert response.headers["X-TickerHub-Seq"] == "2"
    epoch = response.headers["X-TickerHub-Epoch"]
    assert len(epoch) == 16
    assert client.get("/tickers/aapl").headers["X-TickerHub-Epoch"] == epoch


@pytest.mark.parametrize("raw", ["AAPL", "aapl", "Aapl"])
def test_one_ticker_case_insensitive(client: TestClient, raw: str) -> None:
    response = client.get(f"/tickers/{raw}")
    assert response.status_code == 200
    assert response.json()["symbol"] == "AAPL"


def test_unknown_and_implausible_symbols(client: TestClient) -> None:
    response = client.get("/tickers/ZZZZ")
    assert response.status_code == 404
    assert "ZZZZ" in response.json()["detail"]
    response = client.get("/tickers/no%20way")
    assert response.status_code == 422
    assert "not a valid ticker symbol" in response.json()["detail"]


def test_news_newest_first_filtered_and_limited(client: TestClient) -> None:
    items = client.get("/news").json()
    assert [i["id"] for i in items] == ["n5", "n4", "n3", "n2", "n1"]
    items = client.get("/news", params={"symbols": "aapl", "limit": 2}).json()
    assert [i["id"] for i in items] == ["n5", "n3"]
    assert client.get("/news", params={"symbols": "bad symbol"}).status_code == 422
    assert client.get("/news", params={"limit": 0}).status_code == 422


def test_history(client: TestClient, history: FakeHistory) -> None:
    response = client.get(
        "/tickers/aapl/history",
        params={"start": "2026-01-01", "end": "2026-01-05T00:00:00Z", "interval": "1d"},
    )
    assert response.status_code == 200
    assert response.json()[0]["close"] == 1.5
    symbol, start, end, interval = history.calls[-1]
    assert (symbol, interval) == ("AAPL", "1d")
    assert start.year == 2026
    assert end.tzinfo is not None


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/tickers/AAPL/history", {"interval": "7x"}, 422),
        ("/tickers/AAPL/history", {"start": "yesterday"}, 422),
        ("/tickers/NODATA/history", {}, 404),
        ("/tickers/bad%20sym/history", {}, 422),
    ],
)
def test_history_errors(client: TestClient, path: str, params: dict, status: int) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status
    assert response.json()["detail"]


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["seq"] == 2


def test_readyz_tells_whether_the_producer_is_alive(client: TestClient, redis_server: Any) -> None:
    # seed()'s producer said it is alive; its heartbeat gone, nobody does.
    async def silence() -> None:
        redis = Redis.from_url(redis_server.url)
        try:
            await redis.delete(RedisKeys().producer_heartbeat)
        finally:
            await redis.aclose()

    asyncio.run(silence())
    eventually_blocking(
        lambda: client.get("/readyz").json()["producer_age_s"] is None,
        "readyz reports no heartbeat",
        limit=5,
    )

    async def beat() -> None:
        redis = Redis.from_url(redis_server.url)
        try:
            await SnapshotStore(redis, RedisKeys()).beat(ttl=30)
        finally:
            await redis.aclose()

    asyncio.run(beat())
    # The probe's Redis answer is cached for about a second.
    eventually_blocking(
        lambda: client.get("/readyz").json()["producer_age_s"] is not None,
        "readyz reports the producer's heartbeat",
        limit=5,
    )
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert 0 <= ready.json()["producer_age_s"] < 30


def test_openapi_documents_the_models(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    models = set(schema["components"]["schemas"])
    assert {"Quote", "NewsItem", "HistoryPoint", "ErrorDetail"} <= models
    assert "/tickers/{symbol}/history" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_not_ready_without_redis() -> None:
    from tickerhub_testkit.net import free_port

    settings = ApiSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings, history=FakeHistory())) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["redis"] is False
        assert client.get("/healthz").status_code == 200
        response = client.get("/tickers")
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert "Redis is unreachable" in detail
        assert "127.0.0.1" not in detail
