"""A test producer: writes quotes into Redis the documented way, as the poller does."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_core.models import NewsItem, make_quote
from tickerhub_core.store import SnapshotStore

HEARTBEAT_TTL = 300.0  # the poller's is 30 s; longer here, so a slow test stays "alive"


def full_quote(symbol: str, seq: int, **fields: Any) -> dict[str, Any]:
    return {**make_quote(symbol, **fields), "seq": seq, "stale": False}


class Producer:
    """Publishes diffs through ``SnapshotStore.publish_diff``, as any producer must.

    ``quotes`` and ``seq`` are what a client that merged every diff should hold.
    """

    def __init__(self, redis: Redis, keys: RedisKeys | None = None) -> None:
        self.store = SnapshotStore(redis, keys or RedisKeys())
        self.quotes: dict[str, dict[str, Any]] = {}
        self.seq = 0

    async def publish(self, changes: dict[str, dict[str, Any]]) -> int:
        """``changes``: symbol -> changed fields (a new symbol gets a full quote)."""
        seq = self.seq + 1
        data: dict[str, dict[str, Any]] = {}
        for symbol, fields in changes.items():
            if symbol not in self.quotes:
                self.quotes[symbol] = full_quote(symbol, seq, **fields)
                data[symbol] = dict(self.quotes[symbol])
            else:
                self.quotes[symbol].update(fields, seq=seq)
                data[symbol] = {"symbol": symbol, "seq": seq, **fields}
        full = {s: wire.dumps(self.quotes[s]) for s in changes}
        result = await self.store.publish_diff(self.seq, wire.diff_message(seq, data), full)
        assert result.ok, result
        # A live producer says so (docs/protocol.md): without it the api serves every
        # quote stale once the heartbeat is gone.
        await self.store.beat(ttl=HEARTBEAT_TTL)
        self.seq = seq
        return seq


def news_item(i: int, *tickers: str) -> NewsItem:
    """A minimal stored news item: id ``id<i>``, published on 2026-01-<i>."""
    return {
        "id": f"id{i}",
        "title": f"t{i}",
        "publisher": None,
        "link": None,
        "published_at": f"2026-01-{i:02d}T00:00:00Z",
        "tickers": list(tickers),
    }
