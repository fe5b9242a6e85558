"""What REST may read of the stream machinery: quotes, news, and a few counts.

Quotes come from the process's mirror while the hub is ready: it is exactly
the Redis snapshot at ``mirror.seq`` (at most one pub/sub hop behind), so REST
and the WebSocket streams agree and REST traffic costs Redis nothing. When the
hub is not ready (starting, or resubscribing after a Redis outage) they are
read from Redis directly; Redis errors propagate (``RedisError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tickerhub_api.stream.hub import Hub
from tickerhub_core import wire
from tickerhub_core.models import NewsItem, Quote


@dataclass(frozen=True, slots=True)
class HubStatus:
    ready: bool  # subscribed and holding a snapshot
    seq: int
    symbols: int
    connections: int  # open WebSockets, prices and news
    epoch: str = ""  # of the snapshot served (GET /status shows it)
    quotes_stale: bool = False  # no producer alive: every quote served stale (liveness.py)


class Reads:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def snapshot(self) -> tuple[int, str, dict[str, Quote]]:
        """``(seq, epoch, every symbol's quote)``, read together."""
        hub = self._hub
        if hub.ready:
            return hub.mirror.seq, hub.mirror.epoch, hub.mirror.view()
        snapshot = await hub.snapshots.load_snapshot(fields=False)
        if self._redis_behind(snapshot.seq):
            return hub.mirror.seq, hub.mirror.epoch, hub.mirror.view()
        return snapshot.seq, snapshot.epoch, snapshot.quotes

    async def snapshot_json(self) -> tuple[int, str, bytes]:
        """``(seq, epoch, every symbol's quote as JSON)``; from the mirror, encoded once per
        seq."""
        hub = self._hub
        if hub.ready:
            return hub.mirror.seq, hub.mirror.epoch, hub.mirror.full_json()
        snapshot = await hub.snapshots.load_snapshot(fields=False)
        if self._redis_behind(snapshot.seq):
            return hub.mirror.seq, hub.mirror.epoch, hub.mirror.full_json()
        return snapshot.seq, snapshot.epoch, wire.dumps(snapshot.quotes)

    async def quote(self, symbol: str) -> tuple[int, str, Quote | None]:
        """``(seq, epoch, the quote)``; ``None`` for an unknown symbol."""
        hub = self._hub
        if hub.ready:
            return hub.mirror.seq, hub.mirror.epoch, hub.mirror.get(symbol)
        snapshot = await hub.snapshots.load_snapshot(fields=False)
        if self._redis_behind(snapshot.seq):
            return hub.mirror.seq, hub.mirror.epoch, hub.mirror.get(symbol)
        return snapshot.seq, snapshot.epoch, snapshot.quotes.get(symbol)

    def _redis_behind(self, seq: int) -> bool:
        """Redis holds less than our last good copy: it restarted empty (or lost data) and
        no producer has written it back yet. The copy is the better answer; the empty
        Redis would say "unknown symbol" about every symbol (a false 404)."""
        mirror = self._hub.mirror
        return mirror.loaded and seq < mirror.seq

    def age(self) -> float | None:
        """Seconds since Redis was last heard from (how old the quotes may be)."""
        return self._hub.age()

    async def bars(self, symbol: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` newest 1-minute bars of ``symbol``, oldest first (from Redis)."""
        return await self._hub.bar_store.recent(symbol, limit)

    async def news(self, count: int, symbols: list[str] | None) -> list[NewsItem]:
        """The ``count`` most recent items, newest first, about any of ``symbols`` (None: all)."""
        return await self._hub.news_store.recent(count, symbols)

    async def producer_beat(self) -> int | None:
        """Epoch ms of the producer's last heartbeat; ``None`` if expired or absent."""
        return await self._hub.snapshots.last_beat()

    def status(self) -> HubStatus:
        hub = self._hub
        return HubStatus(
            hub.ready,
            hub.mirror.seq,
            len(hub.mirror),
            hub.connections,
            epoch=hub.mirror.epoch,
            quotes_stale=hub.liveness.quotes_stale,
        )
