"""The source status rules (status.py) and the document the writer stores."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import fakeredis
import orjson
import pytest

from tickerhub_poller.batcher import QuoteBatcher
from tickerhub_poller.source_status import SourceStatus, overall
from tickerhub_poller.sources.base import (
    NoDataError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
)
from tickerhub_poller.status import DOWN_AFTER_SECONDS, SourceHealth, scrub, state_of
from tickerhub_poller.status_writer import StatusWriter


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rule(**kwargs: Any) -> str:
    base: dict[str, Any] = {
        "reported": True,
        "consecutive_failures": 0,
        "last_success": 100.0,
        "failing_symbols": 0,
        "connected": None,
        "now": 101.0,
    }
    return state_of(**{**base, **kwargs})


def test_state_rule() -> None:
    assert rule(reported=False, last_success=None) == "unknown"
    assert rule() == "ok"
    assert rule(consecutive_failures=1) == "degraded"
    assert rule(consecutive_failures=2) == "degraded"
    assert rule(consecutive_failures=3) == "down"
    # One batch failing while others succeed: data flows, partly.
    assert rule(failing_symbols=1) == "degraded"
    # Failing with no success for a minute is down, however few the failures.
    assert rule(consecutive_failures=1, now=100.0 + DOWN_AFTER_SECONDS) == "down"
    # Never a success: down at the first failure (nothing says the source works).
    assert rule(consecutive_failures=1, last_success=None) == "down"
    # A connected source is not ok while disconnected.
    assert rule(connected=True) == "ok"
    assert rule(connected=False) == "degraded"
    assert rule(connected=False, now=100.0 + DOWN_AFTER_SECONDS) == "down"


def test_overall_state() -> None:
    assert overall([]) == "unknown"
    assert overall(["unknown"]) == "unknown"
    assert overall(["ok", "unknown"]) == "ok"
    assert overall(["ok", "down"]) == "degraded"  # the other source still delivers
    assert overall(["down", "down"]) == "down"
    assert overall(["degraded"]) == "degraded"


@pytest.mark.parametrize(
    ("text", "absent"),
    [
        ("GET https://query1.finance.yahoo.com/v7/finance/quote?symbols=A&crumb=abc123", "abc123"),
        ("wss://streamer.finance.yahoo.com/?version=2&token=t0ps3cret", "t0ps3cret"),
        ("crumb=Xy12.zz refused", "Xy12.zz"),
        ("Set-Cookie: A3=d=AQABBsecret; Domain=.yahoo.com", "AQABBsecret"),
        ("api_key: k3yk3yk3y", "k3yk3yk3y"),
        ("Authorization=Bearer-abc", "Bearer-abc"),
    ],
)
def test_scrub_removes_secrets(text: str, absent: str) -> None:
    cleaned = scrub(text)
    assert absent not in cleaned
    assert cleaned  # something is left to read


def test_scrub_keeps_a_plain_message_and_bounds_it() -> None:
    assert scrub("Yahoo unreachable: DNSError") == "Yahoo unreachable: DNSError"
    assert scrub("https://query1.finance.yahoo.com/v7/finance/quote") == (
        "https://query1.finance.yahoo.com/v7/finance/quote"
    )
    assert scrub("line one\nline two") == "line one line two"
    assert len(scrub("x" * 1000)) == 200


def test_health_counts_and_the_last_error() -> None:
    clock = Clock()
    health = SourceHealth("poll", "yfinance", clock=clock)
    assert health.document()["state"] == "unknown"
    health.record(None)
    clock.now += 1
    health.record(NoDataError("ZZZZ: not in Yahoo's answer"))  # an answer: not a failure
    doc = health.document()
    assert doc["state"] == "ok"
    assert doc["requests"] == 2
    assert doc["last_success"] == "2023-11-14T22:13:21Z"
    clock.now += 1
    health.record(SourceUnavailableError("Yahoo unreachable: DNSError"))
    doc = health.document()
    assert doc["state"] == "degraded"
    assert doc["consecutive_failures"] == 1
    assert doc["last_error"] == {
        "type": "SourceUnavailableError",
        "message": "Yahoo unreachable: DNSError",
        "at": "2023-11-14T22:13:22Z",
    }
    health.record(RateLimitedError("Yahoo is rate limiting us"))
    health.record(RateLimitedError("Yahoo is rate limiting us"))
    assert health.document()["state"] == "down"
    assert health.down
    health.record(None)
    doc = health.document()
    assert doc["state"] == "ok"
    assert doc["consecutive_failures"] == 0
    assert doc["last_error"]["type"] == "RateLimitedError"  # kept for the record
    assert doc["requests"] == 6


def test_down_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tickerhub_poller.status")
    clock = Clock()
    health = SourceHealth("poll", "yfinance", clock=clock)
    for _ in range(50):
        clock.now += 1
        health.record(SourceUnavailableError("Yahoo unreachable: DNSError"))
    clock.now += 1
    health.record(None)
    health.record(None)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "yfinance: Yahoo unreachable: DNSError (SourceUnavailableError); retrying with backoff",
        "yfinance: recovered after 50 failures over 50.0s",
    ]
    assert caplog.records[0].levelno == logging.WARNING


def test_degraded_is_not_logged_by_the_status(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tickerhub_poller.status")
    health = SourceHealth("poll", "yfinance", clock=Clock())
    health.record(None)
    health.record(SourceUnavailableError("HTTP 500"))
    health.record(None)
    assert caplog.records == []  # a batch failing alone: the batcher's line says it


def test_down_by_silence_as_time_passes() -> None:
    clock = Clock()
    changes: list[str] = []
    health = SourceHealth("poll", "yfinance", clock=clock)
    health.on_change = lambda: changes.append(health.state)
    health.record(None)
    health.record(SourceUnavailableError("Yahoo unreachable: DNSError"))
    assert health.evaluate() == "degraded"
    clock.now += DOWN_AFTER_SECONDS
    assert health.evaluate() == "down"  # the writer evaluates as time passes
    assert changes == ["ok", "degraded", "down"]


def test_the_stream_seam() -> None:
    clock = Clock()
    status = SourceStatus("yfinance", 7, clock=clock)
    stream = status.track("stream")
    assert status.track("stream") is stream
    assert status.document()["sources"]["stream"]["state"] == "unknown"
    stream.failed(ConnectionRefusedError("[Errno 111] Connection refused"))
    assert stream.document()["state"] == "down"  # never connected
    stream.connected()
    for _ in range(3):
        stream.tick()
    doc = stream.document()
    assert doc["state"] == "ok"
    assert doc["connected"] is True
    assert doc["ticks"] == 3
    assert doc["requests"] == 1  # connect attempts that succeeded
    clock.now += 1
    stream.disconnected(OSError("connection closed"))
    doc = stream.document()
    assert doc["state"] == "degraded"
    assert doc["connected"] is False
    clock.now += DOWN_AFTER_SECONDS
    assert stream.document()["state"] == "down"
    stream.connected()
    assert stream.document()["state"] == "ok"


def test_document_shape_and_symbol_counts() -> None:
    on_demand = [3]
    status = SourceStatus(
        "yfinance",
        7,
        on_demand_symbols=lambda: on_demand[0],
        failing_symbols=lambda: 2,
        clock=Clock(),
    )
    status.poll.record(None)
    doc = status.document()
    assert doc["state"] == "degraded"  # two symbols' batch failing
    assert doc["source"] == "yfinance"
    assert doc["symbols"] == {"static": 7, "on_demand": 3}
    assert set(doc["sources"]) == {"poll"}
    assert doc["sources"]["poll"]["failing_symbols"] == 2
    assert set(doc) >= {"host", "pid", "started_at", "written_at"}
    orjson.dumps(doc)  # JSON as is


class FailingSource:
    name = "failing"
    max_batch = 50

    def __init__(self) -> None:
        self.error: SourceError | None = SourceUnavailableError("Yahoo unreachable: DNSError")

    async def fetch_quotes(self, symbols: Any) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return {s: {"symbol": s, "price": 1.0} for s in symbols}

    async def fetch_news(self, symbol: str, count: int) -> list[Any]:
        return []

    async def aclose(self) -> None: ...


async def test_the_batcher_reports_through_the_seam_and_goes_quiet_while_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    source = FailingSource()
    status = SourceStatus("failing", 2)
    batcher = QuoteBatcher(source, window=0.0, health=status.poll)
    status.poll.record(None)  # it worked once: the first failures are only degraded
    for _ in range(6):
        with pytest.raises(SourceError):
            await batcher.get("A")
    assert status.poll.state == "down"
    assert batcher.source_down
    assert batcher.failing_symbols == 1
    assert batcher.outcomes == {"unavailable": 6}  # /metrics' count is unchanged
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines  # the batcher's first failure, then the source down
    assert lines[0].startswith("failing quotes:")
    assert lines[1].startswith("failing: Yahoo unreachable")
    source.error = None
    await batcher.get("A")
    assert status.poll.evaluate() == "ok"
    assert batcher.failing_symbols == 0
    await batcher.aclose()


async def read(redis: fakeredis.FakeAsyncRedis) -> Any:
    raw = await redis.get("source:status")
    assert raw is not None
    return orjson.loads(raw)


async def test_the_writer_stores_the_document_with_a_ttl_and_writes_on_change() -> None:
    redis = fakeredis.FakeAsyncRedis()
    status = SourceStatus("simulated", 4)
    writer = StatusWriter(redis, "source:status", status, interval=30.0, ttl=10)
    task = asyncio.create_task(writer.run())
    try:
        for _ in range(100):
            if writer.writes:
                break
            await asyncio.sleep(0.01)
        stored = await read(redis)
        assert stored["state"] == "unknown"
        assert 0 < await redis.ttl("source:status") <= 10
        status.poll.record(None)  # a change: written well before the 30 s interval
        for _ in range(300):
            stored = await read(redis)
            if stored["state"] == "ok":
                break
            await asyncio.sleep(0.01)
        assert stored["state"] == "ok"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()


async def test_a_failed_write_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = fakeredis.FakeServer()
    server.connected = False  # every command raises ConnectionError
    redis = fakeredis.FakeAsyncRedis(server=server)
    writer = StatusWriter(redis, "source:status", SourceStatus("simulated", 1))
    assert await writer.write() is False
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_the_state_gauge() -> None:
    from tickerhub_poller.metrics import PollerCollector

    status = SourceStatus("simulated", 1)
    status.track("stream").connected()
    status.poll.record(SourceUnavailableError("Yahoo unreachable: DNSError"))

    class Poller:
        tickers: list[Any] = []
        batcher = QuoteBatcher(FailingSource())
        snapshot = type("S", (), {"seq": 0})()
        publisher = type("P", (), {"published": 0, "conflicts": 0, "redis_up": True})()

    Poller.status = status  # type: ignore[attr-defined]
    families = {f.name: f for f in PollerCollector(Poller()).collect()}
    samples = {
        (s.labels["source"], s.labels["state"]): s.value
        for s in families["tickerhub_poller_source_state"].samples
    }
    assert samples[("poll", "down")] == 1
    assert samples[("poll", "ok")] == 0
    assert samples[("stream", "ok")] == 1
    assert len(samples) == 8  # every state of every source, 0 or 1


def test_report_is_the_same_seam_by_name() -> None:
    status = SourceStatus("yfinance", 1, clock=Clock())
    status.report("stream", "error", ConnectionRefusedError("refused"))
    assert status.sources["stream"].document()["state"] == "down"
    status.report("stream", "connected")
    status.report("stream", "tick")
    doc = status.sources["stream"].document()
    assert (doc["state"], doc["connected"], doc["ticks"]) == ("ok", True, 1)
    status.report("stream", "disconnected")
    assert status.sources["stream"].document()["state"] == "degraded"
