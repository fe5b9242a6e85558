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

from tickerhub_api.connection import Connection
from tickerhub_api.mirror import Mirror
from tickerhub_api.prices import PONG, error_frame
from tickerhub_api.protocol import TOO_MANY_SYMBOLS, UNAVAILABLE, Ping, ProtocolError, parse_message
from tickerhub_api.watchers import WatchIndex
from tickerhub_core import wire
from tickerhub_core.models import NewsItem
from tickerhub_core.store import NewsStore


class NewsStream:
    def __init__(
        self,
        store: NewsStore,
        limit: int,
        max_symbols: int,
        mirror: Mirror,
    ) -> None:
        self._store = store
        self._limit = limit
        self._max_symbols = max_symbols
        self._mirror = mirror
        self._index: WatchIndex[Connection] = WatchIndex()
        self._holding: dict[Connection, list[NewsItem]] = {}
        self._locks: dict[Connection, asyncio.Lock] = {}
        self.connections: set[Connection] = set()

    async def attach(self, conn: Connection) -> None:
        self.connections.add(conn)
        self._locks[conn] = asyncio.Lock()
        self._index.watch_everything(conn)
        await self.send_snapshot(conn)

    def detach(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self._index.remove(conn, conn.watch)
        self._holding.pop(conn, None)
        self._locks.pop(conn, None)

    async def handle_text(self, conn: Connection, text: str) -> None:
        try:
            message = parse_message(text, self._max_symbols)
        except ProtocolError as exc:
            conn.send_frame(error_frame(exc.code, exc.message))
            return
        if isinstance(message, Ping):
            conn.send_frame(PONG)
            return
        symbols = message.symbols
        if message.action == "unsubscribe":
            assert symbols is not None
            # As for prices, "everything but these" becomes today's symbols minus these.
            current = set(self._mirror.symbols()) if conn.watch is None else conn.watch
            new_watch = current.difference(symbols)
            self._set_watch(conn, new_watch)
            conn.send_frame(
                _encode(
                    {
                        "type": "unsubscribed",
                        "symbols": list(symbols),
                        "watchlist": sorted(new_watch),
                    }
                )
            )
            return
        if message.action == "subscribe":
            assert symbols is not None
            if conn.watch is not None:
                merged = conn.watch.union(symbols)
                if len(merged) > self._max_symbols:
                    conn.send_frame(
                        error_frame(
                            TOO_MANY_SYMBOLS, f"at most {self._max_symbols} symbols per connection"
                        )
                    )
                    return
                self._set_watch(conn, merged)
        else:
            self._set_watch(conn, None if symbols is None else set(symbols))
        reply = {
            "watchlist": None if conn.watch is None else sorted(conn.watch),
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
                conn.send_frame(error_frame(UNAVAILABLE, "news is unavailable right now"))
                return
            finally:
                held = self._holding.pop(conn, [])
            if conn not in self.connections:
                return
            conn.send_frame(_encode({"type": "snapshot", "data": items, **(reply or {})}))
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

    def _set_watch(self, conn: Connection, watch: set[str] | None) -> None:
        self._index.rewatch(conn, conn.watch, watch)
        conn.watch = watch

    @staticmethod
    def _wants(conn: Connection, item: NewsItem) -> bool:
        return conn.watch is None or not conn.watch.isdisjoint(item.get("tickers") or ())


def _encode(message: dict[str, Any]) -> str:
    return wire.dumps(message).decode()
