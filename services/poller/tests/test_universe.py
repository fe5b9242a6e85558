"""The polled set (universe.py): the pure plan, the task bookkeeping, and the interest Lua
against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest
from redis.asyncio import Redis

from tickerhub_core.interest import Interest, InterestStore, Outcome
from tickerhub_core.keys import RedisKeys
from tickerhub_poller.batcher import QuoteBatcher
from tickerhub_poller.snapshot import Snapshot
from tickerhub_poller.sources.simulated import SimulatedSource
from tickerhub_poller.tickers import TickerTask
from tickerhub_poller.universe import OnDemandTask, Universe, plan
from tickerhub_testkit.wait import eventually

TTL = 10_000  # ms
NOW = 1_000_000


def test_plan_polls_what_was_asked_within_the_ttl() -> None:
    scores = {"IBM": NOW - 1, "ORCL": NOW - TTL - 1, "SAP": NOW - 2 * TTL - 1, "AAPL": NOW}
    p = plan(scores, NOW, ["AAPL", "MSFT"], TTL, room=10)
    assert p.poll == ["IBM"]
    assert p.expired == ["ORCL", "SAP"]  # no longer polled: stale
    assert p.remove == ["SAP"]  # unasked for twice the TTL: out of the snapshot
    assert p.static_asked == ["AAPL"]  # TICKERS anyway: never on demand


def test_plan_keeps_the_most_recently_asked_when_room_is_short() -> None:
    scores = {"A": NOW - 3, "B": NOW - 1, "C": NOW - 2}
    assert plan(scores, NOW, [], TTL, room=2).poll == ["B", "C"]
    assert plan(scores, NOW, [], TTL, room=2).expired == ["A"]
    assert plan(scores, NOW, [], TTL, room=0).poll == []


def test_plan_skips_symbols_just_found_unknown() -> None:
    assert plan({"ZZZZ": NOW}, NOW, [], TTL, room=5, exclude=["ZZZZ"]).poll == []


class FakeStore:
    """The InterestStore's interface over a dict (the Lua is tested below on a real Redis)."""

    def __init__(self) -> None:
        self.scores: dict[str, int] = {}
        self.now = NOW
        self.unknown: list[str] = []
        self.forgotten: list[str] = []

    async def sync(self, room: int, ttl_ms: int, unknown: Iterable[str] = ()) -> Interest:
        for symbol in unknown:
            self.unknown.append(symbol)
            self.scores.pop(symbol, None)
        return Interest(self.now, dict(self.scores))

    async def forget(self, symbols: Iterable[str], cutoff_ms: int, bars: bool = True) -> int:
        for symbol in symbols:
            self.scores.pop(symbol, None)
            self.forgotten.append(symbol)
        return 0


def make_universe(store: FakeStore, source: SimulatedSource) -> tuple[Universe, Snapshot, list]:
    snapshot = Snapshot()
    batcher = QuoteBatcher(source, window=0.0)
    removed: list[list[str]] = []

    def make_task(symbol: str) -> TickerTask:
        return OnDemandTask(symbol, batcher, snapshot, lambda: None, 0.01, 3)

    def remove(symbols: list[str]) -> None:
        removed.append(symbols)
        for symbol in symbols:
            snapshot.published.pop(symbol, None)
            snapshot.pending.pop(symbol, None)

    universe = Universe(
        ["AAPL"],
        make_task,
        snapshot,
        lambda: None,
        remove,
        store,  # type: ignore[arg-type]
        max_symbols=5,
        ttl=TTL / 1000,
    )
    return universe, snapshot, removed


async def test_universe_starts_stops_marks_stale_and_removes() -> None:
    store = FakeStore()
    universe, snapshot, removed = make_universe(store, SimulatedSource())
    changes: list[list[str]] = []
    universe.subscribe(lambda: changes.append(universe.symbols()))
    store.scores["IBM"] = NOW
    await universe.refresh()
    assert universe.symbols() == ["AAPL", "IBM"]
    assert universe.counts == {"static": 1, "on_demand": 1}
    assert changes == [["AAPL", "IBM"]]
    await eventually(lambda: snapshot.get("IBM"), "IBM polled by its task")
    # Nobody asked for a TTL: no longer polled, stale.
    store.now = NOW + TTL + 1
    await universe.refresh()
    assert universe.symbols() == ["AAPL"]
    assert changes[-1] == ["AAPL"]
    await asyncio.sleep(0.05)  # a cancelled task polls no more
    quote = snapshot.get("IBM")
    assert quote is not None
    assert quote["stale"] is True
    assert removed == []
    # Twice the TTL: removed (one reset), then forgotten once gone from the snapshot.
    store.now = NOW + 2 * TTL + 1
    await universe.refresh()
    assert removed == [["IBM"]]
    await universe.refresh()
    assert store.forgotten == ["IBM"]
    assert snapshot.get("IBM") is None


async def test_a_symbol_unknown_on_its_first_poll_is_recorded_and_dropped() -> None:
    store = FakeStore()
    universe, snapshot, _ = make_universe(store, SimulatedSource(unknown=["ZZZZ"]))
    store.scores["ZZZZ"] = NOW
    await universe.refresh()
    assert "ZZZZ" in universe.symbols()
    await eventually(
        lambda: "ZZZZ" not in universe.symbols(), "ZZZZ dropped: its first poll said NoDataError"
    )
    await universe.refresh()
    assert store.unknown == ["ZZZZ"]
    assert "ZZZZ" not in store.scores
    assert universe.symbols() == ["AAPL"]
    assert snapshot.get("ZZZZ") is None


async def test_without_a_store_the_set_is_tickers() -> None:
    universe = Universe(["AAPL", "MSFT"], lambda s: None, Snapshot(), lambda: None, lambda s: None)  # type: ignore[arg-type,return-value]
    await universe.run()  # returns at once: ON_DEMAND=false
    assert universe.symbols() == ["AAPL", "MSFT"]
    assert universe.counts == {"static": 2, "on_demand": 0}


# -- the Lua scripts, on a real redis-server -----------------------------------------


@pytest.fixture
async def store(redis_server: Any) -> Any:
    client = Redis.from_url(redis_server.url)
    yield InterestStore(client, RedisKeys()), client
    await client.aclose()


@pytest.mark.integration
async def test_register_enforces_the_room_atomically_and_answers_unknown(store: Any) -> None:
    interest, redis = store
    # No on-demand poller has stated its config: nothing is registered.
    assert await interest.register(["IBM"], ["AAPL"]) == {
        "IBM": Outcome.NO_POLLER,
        "AAPL": Outcome.NO_POLLER,
    }
    assert await redis.exists("interest") == 0
    await interest.sync(room=2, ttl_ms=60_000, unknown=["ZZZZ"])
    assert 0 < await redis.pttl("interest:config") <= 10_000  # gone soon after the poller
    outcomes = await interest.register(["IBM", "ORCL", "SAP", "ZZZZ"], [])
    assert outcomes == {
        "IBM": Outcome.OK,
        "ORCL": Outcome.OK,
        "SAP": Outcome.CAPACITY,
        "ZZZZ": Outcome.UNKNOWN,
    }
    # Refreshing a live member needs no room; touching a held static symbol does nothing.
    again = await interest.register(["IBM"], ["ORCL", "AAPL"])
    assert again == {"IBM": Outcome.OK, "ORCL": Outcome.OK, "AAPL": Outcome.NOT_ON_DEMAND}
    assert set(await redis.zrange("interest", 0, -1)) == {b"IBM", b"ORCL"}


@pytest.mark.integration
async def test_sync_reads_with_redis_time_and_forget_spares_the_asked_again(store: Any) -> None:
    interest, redis = store
    await interest.sync(room=10, ttl_ms=60_000)
    await interest.register(["IBM", "ORCL"], [])
    await redis.set("bars:IBM", "x")
    read = await interest.sync(room=10, ttl_ms=60_000)
    assert set(read.scores) == {"IBM", "ORCL"}
    assert all(abs(score - read.now_ms) < 5_000 for score in read.scores.values())
    # ORCL asked again after the cutoff: stays. IBM goes, with its bars.
    cutoff = read.scores["IBM"] + 1
    await redis.zadd("interest", {"ORCL": cutoff + 10})
    assert await interest.forget(["IBM", "ORCL"], cutoff) == 1
    assert await redis.zrange("interest", 0, -1) == [b"ORCL"]
    assert await redis.exists("bars:IBM") == 0


@pytest.mark.integration
async def test_publisher_removes_symbols_with_one_reset(redis_server: Any) -> None:
    from tickerhub_core.store import SnapshotStore
    from tickerhub_poller.publisher import Publisher

    client = Redis.from_url(redis_server.url)
    try:
        store = SnapshotStore(client, RedisKeys())
        snapshot = Snapshot()
        publisher = Publisher(store, snapshot)
        for symbol in ("AAPL", "IBM", "ORCL"):
            snapshot.update({"symbol": symbol, "price": 1.0, "stale": False})
        await publisher.flush()
        before = await store.load_snapshot()
        pubsub = client.pubsub()
        await pubsub.subscribe("price-diffs")
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        snapshot.update({"symbol": "IBM", "price": 2.0, "stale": True})  # pending: dropped too
        publisher.remove(["IBM", "ORCL"])
        await publisher.flush()
        after = await store.load_snapshot()
        assert set(after.quotes) == {"AAPL"}
        assert after.seq == before.seq + 1 == snapshot.seq
        assert after.epoch != before.epoch  # resumes from before it are refused
        message = await pubsub.get_message(timeout=5)
        assert message is not None
        assert b'"reset"' in message["data"]
        assert set(snapshot.published) == {"AAPL"}
        assert not snapshot.pending
        await pubsub.aclose()
    finally:
        await client.aclose()
