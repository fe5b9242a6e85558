"""The poller's ``/metrics``: a real poller subprocess scraped after it published, and the
batcher's outcome counting against sources that fail each documented way."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
import redis

from tickerhub_core.backoff import Backoff
from tickerhub_core.keys import RedisKeys
from tickerhub_poller.batcher import QuoteBatcher
from tickerhub_poller.metrics import PollerCollector
from tickerhub_poller.sources.base import (
    MalformedResponseError,
    RateLimitedError,
    SourceError,
    SourceTimeoutError,
    SourceUnavailableError,
)
from tickerhub_testkit.metrics import Scrape, scrape
from tickerhub_testkit.net import free_port, wait_for_port
from tickerhub_testkit.processes import Procs, poller_process
from tickerhub_testkit.wait import eventually_blocking

TICKERS = ["AAPL", "MSFT", "GOOGL"]


@pytest.mark.integration
def test_poller_metrics_move_with_its_work(redis_server: Any, procs: Procs) -> None:
    port = free_port()
    proc = procs(poller_process(redis_server.url, TICKERS, METRICS_PORT=str(port)))
    wait_for_port(port, timeout=30)
    url = f"http://127.0.0.1:{port}/metrics"
    last: list[Scrape] = []

    def published(count: int) -> bool:
        last[:] = [scrape(url)]
        return last[0]["tickerhub_poller_diffs_published_total"] >= count

    eventually_blocking(lambda: published(3), "3 diffs published", detail=proc.output)
    first = last[0]
    assert first.get("tickerhub_poller_source_requests_total", outcome="ok") >= 1
    assert first.get("tickerhub_poller_source_requests_total", outcome="rate_limited") == 0
    assert first["tickerhub_poller_source_request_duration_seconds_count"] >= 1
    assert first.get("tickerhub_poller_symbols", mode="static") == len(TICKERS)
    assert first.get("tickerhub_poller_symbols", mode="on_demand") == 0
    assert first["tickerhub_poller_stale_symbols"] == 0
    assert first["tickerhub_poller_redis_up"] == 1
    # Polled every 0.05 s: no symbol's last good quote is anywhere near a minute old.
    assert 0 <= first["tickerhub_poller_oldest_quote_age_seconds"] < 60
    assert first.sum("tickerhub_build_info", service="poller") == 1
    assert "AAPL" not in first.text  # no per-symbol labels

    # The seq it reports is one Redis held (Redis may have moved on since the scrape).
    client = redis.Redis.from_url(redis_server.url)
    keys = RedisKeys()
    try:
        assert 0 < first["tickerhub_poller_seq"] <= int(client.get(keys.prices_seq) or 0)
        # Another writer moves the seq: the poller's compare-and-set refuses, it reloads
        # and carries on; the conflict is counted.
        client.incrby(keys.prices_seq, 10)
        eventually_blocking(
            lambda: scrape(url)["tickerhub_poller_publish_conflicts_total"] >= 1,
            "a publish conflict counted",
            detail=proc.output,
        )
        later = scrape(url)
        assert (
            later["tickerhub_poller_diffs_published_total"]
            > first["tickerhub_poller_diffs_published_total"]
        )
    finally:
        client.close()
    assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404


@pytest.mark.integration
def test_a_taken_metrics_port_is_logged_not_fatal(redis_server: Any, procs: Procs) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = procs(poller_process(redis_server.url, TICKERS, METRICS_PORT=str(port)))
        proc.wait_for_output("cannot serve metrics on port", timeout=30)
        proc.wait_for_output("polling", timeout=30)
        assert proc.proc is not None
        assert proc.proc.poll() is None


class FailingSource:
    """Answers each call with the next item of ``script``: an exception to raise or ``ok``."""

    name = "scripted"
    max_batch = 50

    def __init__(self, script: Sequence[SourceError | Exception | str]) -> None:
        self.script = list(script)

    async def fetch_quotes(self, symbols: Sequence[str]) -> dict[str, Any]:
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return {s: {"symbol": s, "price": 1.0} for s in symbols}

    async def fetch_news(self, symbol: str, count: int) -> list[Any]:
        return []

    async def aclose(self) -> None:
        pass


async def test_source_requests_are_counted_by_outcome() -> None:
    source = FailingSource(
        [
            "ok",
            RateLimitedError("429"),
            SourceTimeoutError("no answer within 10s"),
            SourceUnavailableError("503"),
            MalformedResponseError("not json"),
            KeyError("a source bug"),  # unexpected: handled (and counted) as malformed
        ]
    )
    # No backoff delay: the scripted calls follow each other at once.
    batcher = QuoteBatcher(source, window=0, backoff=Backoff(base=0, cap=0))
    for _ in range(6):
        with contextlib.suppress(SourceError):
            await batcher.get("AAPL")
    await batcher.aclose()
    assert batcher.outcomes == {
        "ok": 1,
        "rate_limited": 1,
        "timeout": 1,
        "unavailable": 1,
        "malformed": 2,
    }
    assert batcher.durations.count == 6

    class Poller:
        tickers: list[Any] = []
        snapshot = type("S", (), {"seq": 7})()
        publisher = type("P", (), {"published": 2, "conflicts": 0, "redis_up": True})()

    Poller.batcher = batcher  # type: ignore[attr-defined]
    families = {f.name: f for f in PollerCollector(Poller()).collect()}
    samples = {
        s.labels["outcome"]: s.value
        for s in families["tickerhub_poller_source_requests"].samples
        if s.name.endswith("_total")
    }
    assert samples == {
        "ok": 1,
        "rate_limited": 1,
        "timeout": 1,
        "unavailable": 1,
        "malformed": 2,
        "no_data": 0,
    }
    assert "tickerhub_poller_stream_connected" not in families  # no stream source here


def test_oldest_quote_age_counts_symbols_on_demand() -> None:
    def task(fresh_at: float) -> Any:
        return type("T", (), {"fresh_at": fresh_at, "stale": False})()

    class Poller:
        tickers = [task(95.0), task(90.0)]
        on_demand = {"IBM": task(40.0)}  # polled for a client, and the least fresh
        snapshot = type("S", (), {"seq": 7})()
        publisher = type("P", (), {"published": 2, "conflicts": 0, "redis_up": True})()
        batcher = QuoteBatcher(FailingSource([]), window=0)

    families = {f.name: f for f in PollerCollector(Poller(), clock=lambda: 100.0).collect()}
    [age] = families["tickerhub_poller_oldest_quote_age_seconds"].samples
    assert age.value == 60.0
    symbols = {s.labels["mode"]: s.value for s in families["tickerhub_poller_symbols"].samples}
    assert symbols == {"static": 2, "on_demand": 1}
