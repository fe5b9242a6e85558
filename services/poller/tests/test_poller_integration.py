"""The poller as a real subprocess against a real redis-server."""

from __future__ import annotations

import time
from typing import Any, cast

import orjson
import pytest
import redis

from tickerhub_client import QuoteView
from tickerhub_testkit.processes import ServiceProcess, poller_process
from tickerhub_testkit.wait import eventually_blocking

pytestmark = pytest.mark.integration

TICKERS = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA"]


def poller(url: str, **env: str) -> ServiceProcess:
    return poller_process(url, TICKERS, **env)


def started(proc: ServiceProcess) -> ServiceProcess:
    """Wait until the poller runs (its signal handlers are installed, its tasks started)."""
    proc.wait_for_output("polling", timeout=30)
    return proc


def drain_until(pubsub: redis.client.PubSub, enough) -> list[dict]:
    """Messages until ``enough(messages)`` holds."""
    messages: list[dict] = []

    def collected() -> bool:
        m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if m is not None:
            messages.append(orjson.loads(m["data"]))
        return enough(messages)

    eventually_blocking(collected, "enough messages", interval=0, detail=lambda: str(messages))
    return messages


def drain(pubsub: redis.client.PubSub, seconds: float) -> list[dict]:
    messages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if m is not None:
            messages.append(orjson.loads(m["data"]))
    return messages


def test_poller_fills_redis_and_publishes_ordered_diffs(redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    pubsub.subscribe("price-diffs")
    with poller(redis_server.url) as proc:
        started(proc)
        messages = drain_until(pubsub, lambda m: len(m) >= 5)
        assert proc.stop() == 0, proc.output()  # SIGTERM: graceful, exit 0
    messages += drain(pubsub, 0.3)  # what it flushed while shutting down
    assert "shutting down" in proc.output()
    assert len(messages) >= 5
    assert all(m["type"] == "diff" for m in messages)
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(seqs) + 1))  # every diff, in order, no gap
    first = messages[0]["data"]
    assert sorted(first) == sorted(TICKERS)  # first sight: every symbol, every field
    assert set(first["AAPL"]) >= {"symbol", "seq", "price", "change", "market_state", "stale"}
    for m in messages:
        for symbol, fields in m["data"].items():
            assert fields["symbol"] == symbol
            assert fields["seq"] == m["seq"]
    # A subscriber that merges every diff ends exactly at the hash.
    prices = cast("dict[bytes, bytes]", client.hgetall("prices"))  # no decode_responses
    stored = {k.decode(): orjson.loads(v) for k, v in prices.items()}
    assert int(cast("bytes", client.get("prices:seq"))) == seqs[-1]
    view = QuoteView()  # a client's view, from the first diff on (nothing before it)
    for m in messages:
        view.apply(m)
    assert view.quotes == stored
    assert view.seq == seqs[-1]
    pubsub.close()
    client.close()


def test_poller_keeps_a_heartbeat_key_alive(redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with poller(redis_server.url) as proc:
        started(proc)
        eventually_blocking(lambda: client.exists("prices:heartbeat"), "heartbeat key")
        ttl_ms = client.pttl("prices:heartbeat")
        assert 0 < ttl_ms <= 30_000  # it expires by itself when the poller dies
        assert abs(int(cast("bytes", client.get("prices:heartbeat"))) - time.time() * 1000) < 30_000
    client.close()


def test_poller_waits_for_redis_that_is_not_there_yet(own_redis_server) -> None:
    url = own_redis_server.url
    own_redis_server.stop()
    with poller(url) as proc:
        proc.wait_for_output("cannot load the snapshot")
        own_redis_server.start()
        client = redis.Redis.from_url(url)
        eventually_blocking(lambda: client.hlen("prices") == len(TICKERS), "data")
        client.close()
    assert "Traceback" not in proc.output()


def test_news_items_are_stored_and_published(redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    pubsub.subscribe("news-updates")
    with poller(redis_server.url, NEWS_INTERVAL="0.2", TICKERS="AAPL,MSFT") as proc:
        started(proc)
        messages = drain_until(
            pubsub, lambda m: {i["tickers"][0] for x in m for i in x["data"]} == {"AAPL", "MSFT"}
        )
    messages += drain(pubsub, 0.3)
    items = [i for m in messages for i in m["data"]]
    assert items
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids))  # each story published once
    assert {i["tickers"][0] for i in items} == {"AAPL", "MSFT"}
    assert client.zcard("news") == len(ids)
    pubsub.close()
    client.close()


def test_bad_settings_stop_the_service_with_a_clear_line(redis_server) -> None:
    proc = poller(redis_server.url, POLL_FREQ="0").start()
    assert proc.proc is not None
    assert proc.proc.wait(timeout=20) == 2
    assert "poller: invalid setting POLL_FREQ" in proc.output()
    assert "Traceback" not in proc.output()


def test_news_is_written_back_when_redis_comes_back_empty(own_redis_server) -> None:
    """Like the prices: the next news poll is minutes away, the poller holds the items."""
    with poller(own_redis_server.url, NEWS_INTERVAL="300") as proc:
        started(proc)
        client: Any = redis.Redis.from_url(own_redis_server.url)
        try:
            eventually_blocking(lambda: client.zcard("news") > 0, "news stored", limit=30)
            # The write-back follows the prices' (Redis behind the poller's seq): with no
            # diff committed yet there is nothing for Redis to be behind.
            eventually_blocking(lambda: int(client.get("prices:seq") or 0) > 0, "a diff", limit=30)
            before = {m.decode() for m in client.zrange("news", 0, -1)}
            own_redis_server.restart()  # empty: it persists nothing
            client = redis.Redis.from_url(own_redis_server.url)
            # Written back by the poller's check (every 5 s), long before the next poll.
            eventually_blocking(
                lambda: client.zcard("news") >= len(before), "news written back", limit=30,
                detail=proc.output,
            )  # fmt: skip
            assert {m.decode() for m in client.zrange("news", 0, -1)} == before
            assert client.exists("news:indexed")
            assert "news items back to redis" in proc.output()
        finally:
            client.close()
