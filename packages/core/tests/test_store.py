"""The Lua scripts against a real redis-server."""

import asyncio
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_core.models import NewsItem
from tickerhub_core.store import PUBLISH_DIFF_LUA, RESET_LUA, NewsStore, SnapshotStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_server):
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def _quote(symbol: str, seq: int, price: float) -> bytes:
    return orjson.dumps({"symbol": symbol, "seq": seq, "price": price})


async def test_publish_diff_is_atomic_and_compare_and_set(redis) -> None:
    keys = RedisKeys("t:")
    store = SnapshotStore(redis, keys)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.prices_channel)
    await pubsub.get_message(timeout=1)  # subscribe confirmation

    msg = wire.diff_message(1, {"AAPL": {"symbol": "AAPL", "seq": 1, "price": 1.0}})
    result = await store.publish_diff(0, msg, {"AAPL": _quote("AAPL", 1, 1.0)})
    assert (result.ok, result.seq) == (True, 1)

    stale = await store.publish_diff(0, msg, {"AAPL": _quote("AAPL", 1, 99.0)})
    assert (stale.ok, stale.seq) == (False, 1)

    seq, quotes = await store.load()
    assert seq == 1
    assert quotes == {"AAPL": {"symbol": "AAPL", "seq": 1, "price": 1.0}}

    received = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert received is not None
    assert received["data"] == msg
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    await pubsub.aclose()


async def test_reset_replaces_the_snapshot_and_announces_it(redis) -> None:
    keys = RedisKeys()
    store = SnapshotStore(redis, keys)
    await store.publish_diff(0, b"{}", {"OLD": _quote("OLD", 1, 1.0)})
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.prices_channel)
    await pubsub.get_message(timeout=1)
    await store.reset(10, {"NEW": _quote("NEW", 3, 2.0)})
    seq, quotes = await store.load()
    assert seq == 10
    assert list(quotes) == ["NEW"]
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert orjson.loads(message["data"])["type"] == "reset"
    await pubsub.aclose()


def _item(n: int, tickers: list[str]) -> NewsItem:
    return {
        "id": f"id{n}",
        "title": f"story {n}",
        "publisher": "P",
        "link": None,
        "published_at": f"2026-11-25T10:{n:02d}:00Z",
        "tickers": tickers,
    }


async def test_news_dedupes_trims_and_publishes_only_new(redis) -> None:
    keys = RedisKeys()
    store = NewsStore(redis, keys)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.news_channel)
    await pubsub.get_message(timeout=1)

    new = await store.add([_item(n, ["AAPL"]) for n in range(3)], max_items=3)
    assert [i["id"] for i in new] == ["id0", "id1", "id2"]
    assert await store.add([_item(1, ["AAPL"])], max_items=3) == []  # seen: nothing new

    new = await store.add([_item(5, ["MSFT"])], max_items=3)
    assert [i["id"] for i in new] == ["id5"]
    recent = await store.recent(10)
    assert [i["id"] for i in recent] == ["id5", "id2", "id1"]  # newest first, trimmed to 3
    # A trimmed story that the source still lists is not announced again.
    assert await store.add([_item(0, ["AAPL"])], max_items=3) == []
    assert [i["id"] for i in await store.recent(10, symbols=["MSFT"])] == ["id5"]
    assert [i["id"] for i in await store.recent(1)] == ["id5"]

    messages = []
    while (m := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)) is not None:
        messages.append(orjson.loads(m["data"]))
    assert [[i["id"] for i in m["data"]] for m in messages] == [["id0", "id1", "id2"], ["id5"]]
    assert all(m["type"] == "news" for m in messages)
    await pubsub.aclose()


async def test_concurrent_producers_never_interleave_wrongly(redis) -> None:
    """Two producers racing with compare-and-set: every seq is used exactly once."""
    keys = RedisKeys()
    store = SnapshotStore(redis, keys)

    async def producer(symbol: str, n: int) -> None:
        done = 0
        while done < n:
            seq = await store.load_seq()
            msg = wire.diff_message(seq + 1, {symbol: {"symbol": symbol, "seq": seq + 1}})
            result = await store.publish_diff(seq, msg, {symbol: _quote(symbol, seq + 1, done)})
            done += result.ok

    await asyncio.gather(producer("A", 50), producer("B", 50))
    seq, quotes = await store.load()
    assert seq == 100
    assert {q["price"] for q in quotes.values()} == {49}


def _many(n: int, tickers: list[str]) -> Any:
    """Like ``_item``, for any n (a minute apart from 2026-11-25T00:00Z)."""
    from datetime import UTC, datetime, timedelta

    when = datetime(2026, 11, 25, tzinfo=UTC) + timedelta(minutes=n)
    return {**_item(0, tickers), "id": f"id{n}", "published_at": when.isoformat()}


async def test_news_by_symbol_matches_a_full_scan_and_reads_only_what_it_returns(redis) -> None:
    keys = RedisKeys("hub1:")
    store = NewsStore(redis, keys)
    symbols = ["AAPL", "MSFT", "TSLA", "GOOG"]
    items = [_many(n, [symbols[n % 4], symbols[(n * 7) % 4]]) for n in range(60)]
    items += [_many(60, []), {**_many(61, ["AAPL"]), "tickers": None}]  # odd shapes are kept
    await store.add(items, max_items=40)  # trims the 22 oldest

    everything = await store.recent(1000)
    assert len(everything) == 40
    for wanted in (["AAPL"], ["MSFT", "TSLA"], ["GOOG", "NOPE"], symbols, ["NOPE"]):
        for limit in (1, 5, 40):
            expected = [i for i in everything if set(wanted) & set(i["tickers"] or ())][:limit]
            assert await store.recent(limit, wanted) == expected, (wanted, limit)
    # The index holds exactly the kept items: trimmed ids were removed from it too.
    kept = {i["id"] for i in everything}
    for symbol in symbols:
        indexed = {m.decode() for m in await redis.zrange(keys.news_symbol(symbol), 0, -1)}
        assert indexed == {i["id"] for i in everything if symbol in (i["tickers"] or ())}
        assert indexed <= kept
    assert await store.recent(5, []) == []


async def test_a_store_written_before_the_index_is_indexed_on_the_next_add(redis) -> None:
    keys = RedisKeys()
    store = NewsStore(redis, keys)
    await store.add([_many(n, ["AAPL"] if n % 2 else ["MSFT"]) for n in range(10)], max_items=50)
    # As an older version left it: items, no index.
    await redis.delete(keys.news_indexed, keys.news_symbol("AAPL"), keys.news_symbol("MSFT"))
    before = [i["id"] for i in await store.recent(3, ["AAPL"])]
    assert before == ["id9", "id7", "id5"]  # read by scanning meanwhile
    await store.add([_many(10, ["TSLA"])], max_items=50)
    assert await redis.exists(keys.news_indexed)
    assert await redis.zcard(keys.news_symbol("AAPL")) == 5
    assert [i["id"] for i in await store.recent(3, ["AAPL"])] == before


async def test_filtered_news_reads_at_most_limit_ids_per_symbol(redis) -> None:
    keys = RedisKeys()
    store = NewsStore(redis, keys)
    await store.add([_many(n, ["AAPL"]) for n in range(200)], max_items=500)
    await redis.config_resetstat()
    assert len(await store.recent(5, ["AAPL"])) == 5
    stats = await redis.info("commandstats")
    # One ZREVRANGE of 5 on the index and one HMGET of 5 items: no read of all 200.
    assert "cmdstat_zrevrange" in stats
    assert stats["cmdstat_zrevrange"]["calls"] == 1
    assert stats["cmdstat_hmget"]["calls"] == 1


async def test_restore_writes_news_back_and_announces_a_reset_not_news(redis) -> None:
    keys = RedisKeys()
    store = NewsStore(redis, keys)
    items = [_many(n, ["AAPL"]) for n in range(5)]
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.news_channel)
    await pubsub.get_message(timeout=1)
    assert await store.restore(items, max_items=50) == 5
    assert [i["id"] for i in await store.recent(10, ["AAPL"])] == [
        f"id{n}" for n in range(4, -1, -1)
    ]
    assert await store.restore(items, max_items=50) == 0  # all there: no second reset
    messages = []
    while (m := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)) is not None:
        messages.append(orjson.loads(m["data"]))
    assert messages == [{"type": "reset"}]
    await pubsub.aclose()


async def test_epoch_is_created_with_the_first_diff_and_kept_by_diffs(redis) -> None:
    keys = RedisKeys("e1:")
    store = SnapshotStore(redis, keys)
    assert await redis.get(keys.prices_epoch) is None
    await store.publish_diff(0, b"{}", {"A": _quote("A", 1, 1.0)})
    first = await redis.get(keys.prices_epoch)
    assert first is not None
    assert len(first) == 16
    await store.publish_diff(1, b"{}", {"A": _quote("A", 2, 2.0)})
    snapshot = await store.load_snapshot()
    assert (snapshot.seq, snapshot.epoch) == (2, first.decode())
    # A refused compare-and-set changes nothing, the epoch included.
    await store.publish_diff(0, b"{}", {"A": _quote("A", 1, 9.0)})
    assert await redis.get(keys.prices_epoch) == first


async def test_every_reset_and_every_wipe_gives_a_new_epoch(redis) -> None:
    keys = RedisKeys("e2:")
    store = SnapshotStore(redis, keys)
    await store.publish_diff(0, b"{}", {"A": _quote("A", 1, 1.0)})
    seen = {(await store.load_snapshot()).epoch}
    for seq in (5, 5, 6):  # even a reset to the same seq is a new history
        await store.reset(seq, {"A": _quote("A", seq, 1.0)})
        epoch = (await store.load_snapshot()).epoch
        assert epoch not in seen
        seen.add(epoch)
    # Redis wiped (restart without persistence): a reader creates a new one...
    await redis.delete(keys.prices, keys.prices_seq, keys.prices_epoch)
    wiped = await store.load_snapshot()
    assert (wiped.seq, wiped.quotes) == (0, {})
    assert wiped.epoch not in seen
    # ...which the next reader sees too (created once, not per read).
    assert (await store.load_snapshot()).epoch == wiped.epoch


async def test_a_producer_without_the_epoch_key_still_publishes(redis) -> None:
    """Producers written before epochs pass two KEYS; the script must not fail for them."""
    keys = RedisKeys("e3:")
    script = redis.register_script(PUBLISH_DIFF_LUA)
    ok, seq = await script(
        keys=[keys.prices, keys.prices_seq], args=[keys.prices_channel, 0, b"{}"]
    )
    assert (ok, seq) == (1, 1)
    assert await redis.get(keys.prices_epoch) is None
    reset = redis.register_script(RESET_LUA)
    assert (
        await reset(keys=[keys.prices, keys.prices_seq], args=[keys.prices_channel, 4, b"{}"]) == 4
    )


async def test_publish_bars_replaces_revisions_trims_and_publishes_in_order(redis) -> None:
    from tickerhub_core.store import BarStore

    keys = RedisKeys("b:")
    store = BarStore(redis, keys)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.bars_channel)
    await pubsub.get_message(timeout=1)

    def bar(t: int, revision: int, symbol: str = "AAPL") -> bytes:
        return orjson.dumps({"symbol": symbol, "t": t, "c": 1.0, "revision": revision})

    assert await store.publish([], max_bars=3) == 0
    assert (
        await store.publish([("AAPL", 60, 0, bar(60, 1)), ("MSFT", 60, 0, bar(60, 1, "MSFT"))], 3)
        == 1
    )
    assert await store.publish([("AAPL", 60, 0, bar(60, 2))], 3) == 2  # a new revision
    assert [b["revision"] for b in await store.recent("AAPL", 10)] == [2]
    for t in (120, 180, 240):
        await store.publish([("AAPL", t, 0, bar(t, 1))], 3)
    assert [b["t"] for b in await store.recent("AAPL", 10)] == [120, 180, 240]  # max 3
    await store.publish([("AAPL", 300, 200, bar(300, 1))], 3)  # nothing older than 200
    assert [b["t"] for b in await store.recent("AAPL", 10)] == [240, 300]
    assert [b["t"] for b in await store.recent("AAPL", 1)] == [300]
    assert len(await store.load_all(["AAPL", "MSFT", "NONE"])) == 3

    first = await pubsub.get_message(timeout=1)
    message = orjson.loads(first["data"])
    assert message["type"] == "bars"
    assert message["seq"] == 1
    assert [b["symbol"] for b in message["data"]] == ["AAPL", "MSFT"]
    await pubsub.aclose()


# -- prices:fields: per-field seqs, for resumes that send changed fields only ----------


async def _publish(store: SnapshotStore, seq: int, changes: dict[str, dict[str, Any]]) -> None:
    data = {s: {"symbol": s, "seq": seq, **fields} for s, fields in changes.items()}
    quotes = {s: orjson.dumps(q) for s, q in data.items()}
    result = await store.publish_diff(seq - 1, wire.diff_message(seq, data), quotes)
    assert (result.ok, result.seq) == (True, seq)


async def test_field_seqs_record_the_diff_that_last_changed_each_field(redis) -> None:
    keys = RedisKeys("f1:")
    store = SnapshotStore(redis, keys)
    await _publish(store, 1, {"A": {"price": 1.0, "volume": 10}, "B": {"price": 5.0}})
    await _publish(store, 2, {"A": {"price": 1.5}})
    await _publish(store, 3, {"B": {"volume": 7}, "C": {"price": 9.0, "name": "C Inc"}})

    snapshot = await store.load_snapshot()
    assert snapshot.fields is not None
    assert snapshot.fields.floor == 0  # complete from the first diff
    assert snapshot.fields.symbols == {
        "A": {"symbol": 2, "seq": 2, "price": 2, "volume": 1},
        "B": {"symbol": 3, "seq": 3, "price": 1, "volume": 3},
        "C": {"symbol": 3, "seq": 3, "price": 3, "name": 3},
    }
    assert (await store.load_snapshot(fields=False)).fields is None  # REST skips it


async def test_field_seqs_restart_after_a_diff_they_did_not_see(redis) -> None:
    keys = RedisKeys("f2:")
    store = SnapshotStore(redis, keys)
    await _publish(store, 1, {"A": {"price": 1.0, "volume": 10}})
    # A producer that passes three KEYS (written before field seqs) publishes seq 2.
    script = redis.register_script(PUBLISH_DIFF_LUA)
    msg = wire.diff_message(2, {"A": {"symbol": "A", "seq": 2, "volume": 11}})
    await script(
        keys=[keys.prices, keys.prices_seq, keys.prices_epoch],
        args=[keys.prices_channel, 1, msg, "A", _quote("A", 2, 1.0)],
    )
    # Until a recording producer publishes again, the record does not cover seq 2.
    assert (await store.load_snapshot()).fields is None
    await _publish(store, 3, {"A": {"price": 3.0}})
    fields = (await store.load_snapshot()).fields
    assert fields is not None
    # Complete only after seq 2: the volume change at 2 was never recorded.
    assert fields.floor == 2
    assert fields.symbols == {"A": {"symbol": 3, "seq": 3, "price": 3}}


async def test_field_seqs_after_a_reset_and_an_unreadable_message(redis) -> None:
    keys = RedisKeys("f3:")
    store = SnapshotStore(redis, keys)
    await _publish(store, 1, {"A": {"price": 1.0}})
    await store.reset(10, {"A": _quote("A", 10, 2.0)})
    fields = (await store.load_snapshot()).fields
    assert fields is not None
    assert (fields.floor, fields.symbols) == (10, {})
    await _publish(store, 11, {"A": {"price": 2.5}})
    # A message that is not a diff's JSON: which fields changed is unknown.
    result = await store.publish_diff(11, b"not json", {"A": _quote("A", 12, 3.0)})
    assert result.ok
    fields = (await store.load_snapshot()).fields
    assert fields is not None
    assert (fields.floor, fields.symbols) == (12, {})
