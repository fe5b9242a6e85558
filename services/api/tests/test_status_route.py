"""``GET /status`` in process, over a real redis-server: what is stored, absent, or junk."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis
from fastapi.testclient import TestClient

from tickerhub_api.app import create_app
from tickerhub_api.settings import ApiSettings
from tickerhub_core.keys import RedisKeys
from tickerhub_testkit.wait import eventually_blocking

pytestmark = pytest.mark.integration

KEY = RedisKeys().source_status


def document(state: str = "down") -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {
        "state": state,
        "source": "yfinance",
        "host": "poller-1",
        "pid": 7,
        "started_at": now,
        "written_at": now,
        "symbols": {"static": 7, "on_demand": 2},
        "sources": {
            "poll": {
                "state": state,
                "last_success": None,
                "consecutive_failures": 9,
                "last_error": {
                    "type": "SourceUnavailableError",
                    "message": "Yahoo unreachable: DNSError",
                    "at": now,
                },
                "requests": 9,
                "failing_symbols": 7,
                "connected": None,
                "ticks": None,
            }
        },
    }


@pytest.fixture
def store(redis_server: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def client(redis_server: Any) -> Iterator[TestClient]:
    app = create_app(ApiSettings(redis_url=redis_server.url))
    with TestClient(app) as client:
        yield client


def status_when(client: TestClient, check: Any) -> dict[str, Any]:
    """The body once ``check`` holds (the stored document is cached for a second)."""
    return eventually_blocking(
        lambda: (body := client.get("/status").json()) and check(body) and body,
        "/status as expected",
        limit=10,
        detail=lambda: str(client.get("/status").json()),
    )


def test_absent_says_no_producer_and_the_api_state(client: TestClient) -> None:
    response = client.get("/status")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "no_producer"
    assert body["producer"] is None
    assert "no poller has reported" in body["note"]
    assert body["api"]["redis"] is True
    assert body["api"]["seq"] == 0
    assert isinstance(body["api"]["epoch"], str)
    assert body["api"]["producer_age_s"] is None


def test_the_stored_document_is_shown_with_its_age(client: TestClient, store: redis.Redis) -> None:
    store.set(KEY, orjson.dumps(document("down")), ex=10)
    body = status_when(client, lambda b: b["state"] == "down")
    producer = body["producer"]
    assert producer["symbols"] == {"static": 7, "on_demand": 2}
    assert producer["sources"]["poll"]["last_error"]["message"] == "Yahoo unreachable: DNSError"
    assert 0 <= producer["age_s"] < 10
    assert body["note"] is None

    store.set(KEY, orjson.dumps(document("ok")), ex=10)
    status_when(client, lambda b: b["state"] == "ok")


@pytest.mark.parametrize(
    "junk", [b"not json", b"[]", b'{"state": "fine"}', orjson.dumps({**document(), "sources": 3})]
)
def test_junk_in_the_key_is_a_clear_note_not_a_500(
    client: TestClient, store: redis.Redis, junk: bytes
) -> None:
    store.set(KEY, junk, ex=10)
    body = status_when(client, lambda b: b["producer"] is None and "shape" in (b["note"] or ""))
    assert body["state"] == "no_producer"


def test_status_is_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    get = schema["paths"]["/status"]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Status"
    }


def test_a_key_of_another_type_is_unreadable_not_redis_down(
    client: TestClient, store: redis.Redis
) -> None:
    store.hset(KEY, "state", "ok")
    body = status_when(client, lambda b: "shape" in (b["note"] or ""))
    assert body["api"]["redis"] is True
