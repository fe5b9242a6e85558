"""The Lua scripts against a real redis-server."""

import asyncio

import orjson
import pytest
from redis.asyncio import Redis

from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_core.models import NewsItem
from tickerhub_core.store import NewsStore, SnapshotStore

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
