"""The ``/ws/news`` stream: a snapshot of recent items, then new items as they come.

News has no sequence numbers and arrives a few items a minute, so unlike
prices there is no in-process copy: snapshots are read from Redis
(``NewsStore.recent``). Items published while a connection's snapshot is being
read are held and sent after it, minus the ones the snapshot already has.

A snapshot that cannot be read (Redis down, or every pooled connection busy
under a connect burst) is answered with one ``error`` ``unavailable`` and
retried with jittered backoff (``RETRY_BASE`` doubling to ``RETRY_CAP``) until
it is sent or the connection goes: the client gets its snapshot once the load
succeeds, without asking again. The jitter spreads a burst's retries apart.

A reconnecting client names the newest item it holds (``?since=<id>`` or
``{"resume": {"id": ...}}``); while that item is still kept, it gets only the
items published after it (by ``published_at``, the order of the news list).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from redis.exceptions import RedisError

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.mirror import Mirror
from tickerhub_api.stream.protocol import (
    BAD_VALUE,
    KEEP,
    UNAVAILABLE,
    Command,
    NewsPoint,
    Opening,
    ProtocolError,
    Resume,
    encode,
    parse_opening,
)
from tickerhub_api.stream.streams import Stream, listed
from tickerhub_core import wire
from tickerhub_core.backoff import Backoff
from tickerhub_core.models import NewsItem
from tickerhub_core.store import NewsStore

RETRY_BASE = 0.2
RETRY_CAP = 5.0


class NewsStream(Stream):
    def __init__(
        self,
        store: NewsStore,
        limit: int,
        max_symbols: int,
        mirror: Mirror,
        max_unknown: int = 50,
        max_pending: int = 10_000,
    ) -> None:
        super().__init__(max_symbols, mirror, max_unknown, max_pending)
        self._store = store
        self._limit = limit
        self._mirror = mirror
        self._holding: dict[Connection, list[NewsItem]] = {}
        self._locks: dict[Connection, asyncio.Lock] = {}
        self._retries: dict[Connection, asyncio.Task[None]] = {}

    def opening(self, params: Mapping[str, str]) -> Opening:
        return parse_opening(params, self._max_symbols, news=True)

    async def _attached(self, conn: Connection, opening: Opening) -> None:
        self._locks[conn] = asyncio.Lock()
        reply = None
        if opening.symbols is not None:
            self._set_watch(conn, set(opening.symbols))
            reply = self._watch_reply(conn, opening.symbols)
        point = opening.resume if isinstance(opening.resume, NewsPoint) else None
        await self.send_snapshot(conn, reply, since=point)

    async def _resume(self, conn: Connection, message: Resume) -> None:
        if not isinstance(message.point, NewsPoint):
            raise ProtocolError(BAD_VALUE, '/ws/news resumes from {"id": "<newest item id>"}')
        reply = None
        if message.symbols is not KEEP:
            symbols = message.symbols
            self._set_watch(conn, None if symbols is None else set(symbols))
            reply = self._watch_reply(conn, symbols or ())
        await self.send_snapshot(conn, reply, since=message.point)

    def _watch_reply(self, conn: Connection, asked: Iterable[str]) -> dict[str, Any]:
        return {
            "watchlist": listed(conn.watch),
            "unknown": [s for s in asked if s not in self._mirror],
        }

    def detach(self, conn: Connection) -> None:
        super().detach(conn)
        self._holding.pop(conn, None)
        self._locks.pop(conn, None)
        retry = self._retries.pop(conn, None)
        if retry is not None:
            retry.cancel()

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
                self._check_unknown(conn, [*conn.watch, *added])
                self._set_watch(conn, conn.watch.union(added))
        else:
            self._check_unknown(conn, symbols)
            self._set_watch(conn, None if symbols is None else set(symbols))
        await self.send_snapshot(conn, self._watch_reply(conn, symbols or ()))

    async def send_snapshot(
        self,
        conn: Connection,
        reply: dict[str, Any] | None = None,
        since: NewsPoint | None = None,
    ) -> None:
        """Queue ``{"type":"snapshot","data":[recent items]}`` filtered by the watchlist;
        if Redis cannot be read, an ``unavailable`` error now and the snapshot later.

        With ``since``: only the items after it (``partial``, ``resumed``) while that
        item is still kept, else the full snapshot with ``"resumed": false``.
        """
        if await self._try_snapshot(conn, reply, since) is not False or conn in self._retries:
            return  # sent, gone, or already being retried (the retry sends the newest watchlist)
        self.error(conn, UNAVAILABLE, "news is unavailable right now; a snapshot follows")
        self._retries[conn] = asyncio.create_task(
            self._retry(conn, since), name="news-snapshot-retry"
        )

    async def _retry(self, conn: Connection, since: NewsPoint | None) -> None:
        backoff = Backoff(base=RETRY_BASE, cap=RETRY_CAP)
        try:
            while conn in self.connections:
                await asyncio.sleep(backoff.next_delay())
                if await self._try_snapshot(conn, None, since) is not False:
                    return
        finally:
            if self._retries.get(conn) is asyncio.current_task():
                del self._retries[conn]

    async def _try_snapshot(
        self, conn: Connection, reply: dict[str, Any] | None, since: NewsPoint | None
    ) -> bool | None:
        """Send the snapshot: ``True`` if sent, ``False`` if Redis failed, ``None`` if gone."""
        lock = self._locks.get(conn)
        if lock is None:
            return None
        async with lock:
            self._holding[conn] = []
            head: dict[str, Any] = {"type": "snapshot"}
            try:
                items = None
                if since is not None:
                    items = await self._store.since(since.id, self._limit, conn.watch)
                    if items is None:
                        head.update(resumed=False, reason="unknown_id")
                    else:
                        head.update(partial=True, resumed=True)
                if items is None:
                    items = await self._store.recent(self._limit, conn.watch)
            except RedisError:
                return False
            finally:
                held = self._holding.pop(conn, [])
            if conn not in self.connections:
                return None
            conn.send_frame(encode({**head, "data": items, **(reply or {})}))
            seen = {item["id"] for item in items}
            late = [item for item in held if item["id"] not in seen and self._wants(conn, item)]
            if late:
                conn.send_frame(wire.news_message(late).decode())
            return True

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
