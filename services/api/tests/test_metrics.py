"""``GET /metrics`` of a real api subprocess after real traffic: the values move as they must.

Real redis-server, the ``api`` console script, websockets clients, a producer writing
the documented way. Nothing here asserts a speed.
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client import CollectorRegistry, generate_latest
from redis.asyncio import Redis

from tickerhub_api.app import create_app
from tickerhub_api.settings import ApiSettings
from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_testkit.metrics import Scrape, scrape
from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.ws import recv

from .conftest import frames_until_closed

pytestmark = pytest.mark.integration

KEY = "metrics-test-key-0123456789"


@pytest.fixture
async def producer(redis_server: Any) -> AsyncIterator[Producer]:
    client = Redis.from_url(redis_server.url)
    producer = Producer(client)
    await producer.publish({s: {"price": 100.0} for s in ("AAPL", "MSFT")})
    yield producer
    await client.aclose()


async def scrape_until(url: str, check: Any, what: str) -> Scrape:
    """Scrape until ``check(scrape)`` holds (counters move once the api has handled traffic)."""
    last: list[Scrape] = []

    async def holds() -> bool:
        last[:] = [await asyncio.to_thread(scrape, url)]
        return bool(check(last[0]))

    await eventually(holds, what, detail=lambda: last[0].text if last else "")
    return last[0]


async def test_metrics_follow_connections_messages_seq_and_close_codes(
    redis_server: Any, procs: Procs, producer: Producer
) -> None:
    api = start_api(procs, redis_server.url)
    url = f"{api.http}/metrics"
    before = await asyncio.to_thread(scrape, url)
    assert before.get("tickerhub_ws_connections", endpoint="prices") == 0
    assert before["tickerhub_seq"] == producer.seq
    assert before["tickerhub_redis_up"] == 1
    assert before.get("tickerhub_snapshot_reloads_total", reason="subscribe") >= 1
    assert (
        before.get(
            "tickerhub_build_info", service="api", version="0.1.0", python=platform.python_version()
        )
        == 1
    )

    a = await websockets.connect(f"{api.ws}/ws/prices")
    b = await websockets.connect(f"{api.ws}/ws/prices")
    news = await websockets.connect(f"{api.ws}/ws/news")
    for ws in (a, b):
        assert (await recv(ws))["type"] == "snapshot"
    opened = await scrape_until(
        url,
        lambda s: (
            s.get("tickerhub_ws_connections", endpoint="prices") == 2
            and s.get("tickerhub_ws_connections", endpoint="news") == 1
        ),
        "2 prices and 1 news connections",
    )
    assert opened.get("tickerhub_ws_connects_total", endpoint="prices") == 2
    sent0 = opened["tickerhub_ws_messages_sent_total"]
    bytes0 = opened["tickerhub_ws_sent_bytes_total"]
    assert sent0 >= 2  # the two snapshots (and news' one, once read)

    for i in range(3):
        await producer.publish({"AAPL": {"price": 101.0 + i}})
    received = 0  # frames the two clients got from here on (diffs may be conflated)
    for ws in (a, b):
        while True:
            message = await recv(ws)
            received += 1
            if message.get("type") == "diff" and message["seq"] == producer.seq:
                break
    await a.send("ping")
    assert await recv(a) == "pong"
    await a.send("{not json")
    assert (await recv(a))["code"] == "bad_json"
    await b.send(b"\x00binary")
    assert (await recv(b))["code"] == "binary_not_supported"
    received += 3

    moved = await scrape_until(
        url,
        lambda s: (
            s.get("tickerhub_ws_protocol_errors_total", endpoint="prices", code="bad_json") == 1
        ),
        "the bad_json error counted",
    )
    # Everything the clients received since (at least a diff each, a pong, two errors).
    assert received >= 5
    assert moved["tickerhub_ws_messages_sent_total"] >= sent0 + received
    assert moved["tickerhub_ws_sent_bytes_total"] > bytes0 + received * 4
    assert moved.get("tickerhub_ws_client_messages_total", endpoint="prices") == 3
    assert (
        moved.get(
            "tickerhub_ws_protocol_errors_total", endpoint="prices", code="binary_not_supported"
        )
        == 1
    )
    assert moved["tickerhub_fanout_duration_seconds_count"] >= 3
    assert moved["tickerhub_pubsub_lag_seconds_count"] >= 3
    assert moved.get("tickerhub_pubsub_lag_seconds_bucket", le="+Inf") >= 3

    # The seq gauge is the seq REST reports.
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{api.http}/tickers")
        missing = await http.get(f"{api.http}/tickers/ZZZZ")
    assert missing.status_code == 404
    seq_scrape = await asyncio.to_thread(scrape, url)
    assert seq_scrape["tickerhub_seq"] == int(response.headers["X-TickerHub-Seq"]) == producer.seq
    assert (
        seq_scrape.get(
            "tickerhub_http_requests_total", method="GET", route="/tickers", status="200"
        )
        == 1
    )
    # The route template, never the raw path: no label names a symbol.
    assert (
        seq_scrape.get(
            "tickerhub_http_requests_total", method="GET", route="/tickers/{symbol}", status="404"
        )
        == 1
    )
    assert "ZZZZ" not in seq_scrape.text
    assert "AAPL" not in seq_scrape.text

    # A seq gap: a diff that skips ahead makes the api count it and reload.
    await producer.store._redis.publish(
        RedisKeys().prices_channel, wire.diff_message(producer.seq + 5, {"AAPL": {"price": 1.0}})
    )
    gapped = await scrape_until(
        url, lambda s: s["tickerhub_seq_gaps_total"] == 1, "the seq gap counted"
    )
    assert gapped.get("tickerhub_snapshot_reloads_total", reason="gap") == 1

    # Clients leave with their own codes; the gauge goes back down.
    await a.close(code=1000)
    await b.close(code=3001, reason="bye")
    await news.close()
    closed = await scrape_until(
        url,
        lambda s: (
            s.get("tickerhub_ws_connections", endpoint="prices") == 0
            and s.get("tickerhub_ws_connections", endpoint="news") == 0
        ),
        "every connection gone",
    )
    assert closed.get("tickerhub_ws_disconnects_total", endpoint="prices", code="1000") == 1
    assert closed.get("tickerhub_ws_disconnects_total", endpoint="prices", code="3001") == 1
    assert closed.get("tickerhub_ws_disconnects_total", endpoint="news", code="1000") == 1


async def test_server_close_codes_and_refusals_are_counted(
    redis_server: Any, procs: Procs, producer: Producer
) -> None:
    # One connection allowed: the second is refused with 1013; an abusive one gets 1008.
    api = start_api(
        procs,
        redis_server.url,
        WS_MAX_CONNECTIONS="1",
        WS_MAX_MESSAGES_PER_SECOND="1",
        WS_MESSAGE_BURST="1",
        WS_RATE_LIMIT_STRIKES="2",
    )
    url = f"{api.http}/metrics"
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await recv(ws)
        async with websockets.connect(f"{api.ws}/ws/prices") as refused:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await recv(refused)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1013
        for _ in range(10):
            await ws.send("ping")
        # (The rate_limited errors queued just before the close may never leave.)
        _, close = await frames_until_closed(ws)
        assert close is not None
        assert close.code == 1008
    done = await scrape_until(
        url,
        lambda s: s.get("tickerhub_ws_disconnects_total", endpoint="prices", code="1008") == 1,
        "the 1008 close counted",
    )
    assert done.get("tickerhub_ws_refused_total", reason="capacity") == 1
    assert (
        done.get("tickerhub_ws_protocol_errors_total", endpoint="prices", code="rate_limited") >= 1
    )
    assert done.get("tickerhub_ws_connects_total", endpoint="prices") == 1


async def test_metrics_stay_open_with_api_keys_and_go_with_metrics_false(
    redis_server: Any, procs: Procs, producer: Producer
) -> None:
    keyed = start_api(procs, redis_server.url, API_KEYS=KEY)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{keyed.http}/tickers")).status_code == 401
        metrics = await http.get(f"{keyed.http}/metrics")
        assert metrics.status_code == 200
        assert KEY not in metrics.text
    scraped = await asyncio.to_thread(scrape, f"{keyed.http}/metrics")
    # The 401 was answered before routing: still counted under its route template.
    assert (
        scraped.get("tickerhub_http_requests_total", method="GET", route="/tickers", status="401")
        == 1
    )

    off = start_api(procs, redis_server.url, METRICS="false")
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{off.http}/metrics")).status_code == 404
        assert (await http.get(f"{off.http}/tickers")).status_code == 200


def test_two_apps_in_one_process_keep_their_own_registries() -> None:
    """Each app registers into its own registry (or the one passed in): no duplicate
    timeseries error, no shared counts."""
    settings = ApiSettings(_env_file=None)
    first = CollectorRegistry()
    create_app(settings, registry=first)
    second_app = create_app(settings)
    assert first is not second_app.state.metrics_registry
    scraped = Scrape(generate_latest(first).decode())
    assert scraped.sum("tickerhub_build_info", service="api", version="0.1.0") == 1
