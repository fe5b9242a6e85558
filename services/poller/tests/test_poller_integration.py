"""The poller as a real subprocess against a real redis-server."""

from __future__ import annotations

import signal
import time

import orjson
import pytest
import redis

from tickerhub_testkit.processes import ServiceProcess, poller_process

pytestmark = pytest.mark.integration

TICKERS = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA"]


def poller(url: str, **env: str) -> ServiceProcess:
    return poller_process(url, TICKERS, **env)


def started(proc: ServiceProcess) -> ServiceProcess:
    """Wait until the poller runs (its signal handlers are installed, its tasks started)."""
    proc.wait_for_output("polling", timeout=30)
    return proc


def drain_until(pubsub: redis.client.PubSub, enough, timeout: float = 20.0) -> list[dict]:
    """Messages until ``enough(messages)`` holds (a generous bound, only against hanging)."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while not enough(messages):
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(messages)} messages")
        m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if m is not None:
            messages.append(orjson.loads(m["data"]))
    return messages


def drain(pubsub: redis.client.PubSub, seconds: float) -> list[dict]:
    messages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if m is not None:
            messages.append(orjson.loads(m["data"]))
    return messages


def wait_until(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def merged_view(snapshot: dict[str, dict], diffs: list[dict]) -> dict[str, dict]:
    view = {s: dict(q) for s, q in snapshot.items()}
    for diff in diffs:
        for symbol, fields in diff["data"].items():
            view.setdefault(symbol, {}).update(fields)
    return view


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
    stored = {k.decode(): orjson.loads(v) for k, v in client.hgetall("prices").items()}
    assert int(client.get("prices:seq")) == seqs[-1]
    assert merged_view({}, messages) == stored
    pubsub.close()
    client.close()


def test_poller_keeps_a_heartbeat_key_alive(redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with poller(redis_server.url) as proc:
        started(proc)
        wait_until(lambda: client.exists("prices:heartbeat"), what="heartbeat key")
        ttl_ms = client.pttl("prices:heartbeat")
        assert 0 < ttl_ms <= 30_000  # it expires by itself when the poller dies
        assert abs(int(client.get("prices:heartbeat")) - time.time() * 1000) < 30_000
    client.close()


def test_restart_publishes_no_spurious_diffs(redis_server, tmp_path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    with poller(redis_server.url, SIM_VOLATILITY="0") as proc:
        started(proc)
        wait_until(lambda: client.get("prices:seq") == b"1", what="first diff")
        time.sleep(0.3)
        assert proc.stop() == 0
    assert client.get("prices:seq") == b"1"  # a flat source changed nothing after the first diff
    before = client.hgetall("prices")

    pubsub = client.pubsub()
    pubsub.subscribe("price-diffs")
    beat = tmp_path / "beat"
    with poller(redis_server.url, SIM_VOLATILITY="0", HEARTBEAT_FILE=str(beat)) as proc:
        proc.wait_for_output("loaded snapshot at seq 1")
        started(proc)
        window = time.time()
        assert drain(pubsub, 1.0) == []  # ~20 poll cycles, nothing published
        # The publisher did run on fresh quotes in that window (it beats after each
        # flush), so "nothing published" is a finding, not a poller that had not started.
        assert beat.stat().st_mtime >= window
    assert client.get("prices:seq") == b"1"
    assert client.hgetall("prices") == before
    pubsub.close()
    client.close()


def test_sigkill_and_restart_keeps_the_sequence_rising(redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    proc = poller(redis_server.url).start()
    wait_until(lambda: int(client.get("prices:seq") or 0) >= 5, what="some diffs")
    proc.stop(signal.SIGKILL)
    seq_at_kill = int(client.get("prices:seq"))
    pubsub = client.pubsub()
    pubsub.subscribe("price-diffs")
    with poller(redis_server.url) as proc:
        started(proc)
        messages = drain_until(pubsub, lambda m: len(m) >= 3)
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seq_at_kill + 1, seq_at_kill + 1 + len(seqs)))
    pubsub.close()
    client.close()


def test_poller_rewrites_its_snapshot_when_redis_comes_back_empty(own_redis_server) -> None:
    url = own_redis_server.url
    client = redis.Redis.from_url(url)
    with poller(url, SIM_VOLATILITY="0") as proc:
        wait_until(lambda: client.get("prices:seq") == b"1", what="first diff")
        before = {k: orjson.loads(v) for k, v in client.hgetall("prices").items()}
        own_redis_server.restart()  # comes back with nothing
        client = redis.Redis.from_url(url)
        wait_until(lambda: client.hlen("prices") == len(TICKERS), timeout=20,
                   what="snapshot rewritten")  # fmt: skip
        after = {k: orjson.loads(v) for k, v in client.hgetall("prices").items()}
        assert after == before
        assert int(client.get("prices:seq")) > 1  # the sequence never goes back
        assert proc.proc.poll() is None  # survived the outage
    client.close()


def test_poller_waits_for_redis_that_is_not_there_yet(own_redis_server) -> None:
    url = own_redis_server.url
    own_redis_server.stop()
    with poller(url) as proc:
        proc.wait_for_output("cannot load the snapshot")
        own_redis_server.start()
        client = redis.Redis.from_url(url)
        wait_until(lambda: client.hlen("prices") == len(TICKERS), timeout=20, what="data")
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
    assert proc.proc.wait(timeout=20) == 2
    assert "poller: invalid setting POLL_FREQ" in proc.output()
    assert "Traceback" not in proc.output()
