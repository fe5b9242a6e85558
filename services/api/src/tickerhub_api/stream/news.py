"""The ``/ws/news`` stream: a snapshot of recent items, then new items as they come.

News has no sequence numbers and arrives a few items a minute, so unlike
prices there is no in-process copy: snapshots are read from Redis
(``NewsStore.recent``). Items published while a connection's snapshot is being
read are held and sent after it, minus the ones the snapshot already has.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.mirror import Mirror
from tickerhub_api.stream.protocol import UNAVAILABLE, Command, encode
from tickerhub_api.stream.streams import Stream, listed
from tickerhub_core import wire
from tickerhub_core.models import NewsItem
from tickerhub_core.store import NewsStore


class NewsStream(Stream):
    def __init__(
        self,
        store: NewsStore,
        limit: int,
        max_symbols: int,
        mirror: Mirror,
    ) -> None:
        super().__init__(max_symbols)
        self._store = store
        self._limit = limit
        self._mirror = mirror
        self._holding: dict[Connection, list[NewsItem]] = {}
        self._locks: dict[Connection, asyncio.Lock] = {}

    async def _attached(self, conn: Connection) -> None:
        self._locks[conn] = asyncio.Lock()
        await self.send_snapshot(conn)

    def detach(self, conn: Connection) -> None:
        super().detach(conn)
        self._holding.pop(conn, None)
        self._locks.pop(conn, None)

    async def _apply(self, conn: Connection, command: Command) -> None:
        symbols = command.symbols
        if command.action == "unsubscribe":
            assert symbols is not None
            # As for prices, "everything but these" becomes today's symbols minus these.
            current = set(self._mirror.symbols()) if conn.watch is None else conn.watch
            new_watch = current.difference(symbols)
            self._set_watch(conn, new_watch)
            conn.send_frame(
                encode(
                    {
                        "type": "unsubscribed",
                        "symbols": list(symbols),
                        "watchlist": listed(new_watch),
                    }
                )
            )
            return
        if command.action == "subscribe":
            assert symbols is not None
            if conn.watch is not None:
                added = [s for s in symbols if s not in conn.watch]
                self._check_room(conn, len(added))
                self._set_watch(conn, conn.watch.union(added))
        else:
            self._set_watch(conn, None if symbols is None else set(symbols))
        reply = {
            "watchlist": listed(conn.watch),
            "unknown": [s for s in symbols or () if s not in self._mirror],
        }
        await self.send_snapshot(conn, reply)

    async def send_snapshot(self, conn: Connection, reply: dict[str, Any] | None = None) -> None:
        """Queue ``{"type":"snapshot","data":[recent items]}`` filtered by the watchlist."""
        lock = self._locks.get(conn)
        if lock is None:
            return
        async with lock:
            self._holding[conn] = []
            try:
                items = await self._store.recent(self._limit, conn.watch)
            except RedisError:
                # The hub resyncs every news connection once Redis is back.
                self.error(conn, UNAVAILABLE, "news is unavailable right now")
                return
            finally:
                held = self._holding.pop(conn, [])
            if conn not in self.connections:
                return
            conn.send_frame(encode({"type": "snapshot", "data": items, **(reply or {})}))
            seen = {item["id"] for item in items}
            late = [item for item in held if item["id"] not in seen and self._wants(conn, item)]
            if late:
                conn.send_frame(wire.news_message(late).decode())

    async def resync(self) -> None:
        """After a Redis reconnect: items may have been missed, send fresh snapshots."""
        await asyncio.gather(*(self.send_snapshot(conn) for conn in list(self.connections)))

    def publish(self, items: list[NewsItem]) -> None:
        if not items:
            return
        for held in self._holding.values():
            held.extend(items)
        everything = self._index.everything
        if everything:
            frame = wire.news_message(items).decode()
            for conn in everything:
                if conn not in self._holding:
                    conn.send_frame(frame)
        per_conn: dict[Connection, list[NewsItem]] = {}
        for item in items:
            targets: set[Connection] = set()
            for symbol in item.get("tickers") or ():
                targets.update(self._index.watchers(symbol))
            for conn in targets:
                per_conn.setdefault(conn, []).append(item)
        for conn, mine in per_conn.items():
            if conn not in self._holding:
                conn.send_frame(wire.news_message(mine).decode())

    @staticmethod
    def _wants(conn: Connection, item: NewsItem) -> bool:
        return conn.watch is None or not conn.watch.isdisjoint(item.get("tickers") or ())
