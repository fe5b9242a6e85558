"""The process's single Redis subscription, feeding the mirror and both streams.

One pub/sub connection per api process, whatever the number of clients. Each
message is handled as soon as it is read (a dict merge and some event sets per
watching connection) so the Redis socket is always drained; the sends happen in
each connection's own task.

Order matters on (re)connect: subscribe first, then load ``(seq, snapshot)``
in one transaction, then apply only diffs with a higher seq. A diff that is not
``seq + 1`` or a ``reset`` message means something was missed: reload and send
a fresh snapshot to the connections whose symbols changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from tickerhub_api.connection import CLOSE_SLOW_CLIENT, Connection, Flusher
from tickerhub_api.mirror import Mirror, Step
from tickerhub_api.news import NewsStream
from tickerhub_api.prices import PriceStream
from tickerhub_api.settings import ApiSettings
from tickerhub_core import wire
from tickerhub_core.backoff import Backoff
from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.keys import RedisKeys
from tickerhub_core.logs import ConditionLog
from tickerhub_core.store import NewsStore, SnapshotStore

log = logging.getLogger(__name__)

# Without traffic, ping the subscription this often so a dead Redis is noticed.
IDLE_PING_SECONDS = 5.0
# Redis behind our seq means it lost its data (restart without persistence). The
# producer that owns the sequence writes its snapshot back with a higher seq
# within seconds; until then keep serving what we hold rather than send clients
# an empty or older snapshot. Past this grace, accept Redis's state: a producer
# really did start over.
BEHIND_GRACE_SECONDS = 15.0
BEHIND_RETRY_SECONDS = 0.25


class Hub:
    def __init__(self, redis: Redis, settings: ApiSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._keys: RedisKeys = settings.keys
        self.snapshots = SnapshotStore(redis, self._keys)
        self.news_store = NewsStore(redis, self._keys)
        self.mirror = Mirror()
        self.flusher = Flusher()
        self.prices = PriceStream(self.mirror, settings.ws_max_symbols)
        self.news = NewsStream(
            self.news_store, settings.news_default_limit, settings.ws_max_symbols, self.mirror
        )
        self.subscribed = False
        self.reloads = 0
        self._reconnected = False
        self._behind_since: float | None = None
        self._retry_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._backoff = Backoff(base=0.2, cap=10.0)
        self._outage = ConditionLog(log, "redis subscription")

    @property
    def ready(self) -> bool:
        """Subscribed and holding a snapshot: what ``/readyz`` reports."""
        return self.subscribed and self.mirror.loaded

    def new_connection(self) -> Connection:
        return Connection(self._settings.ws_send_queue_bound, self.flusher)

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="hub-subscription"),
            asyncio.create_task(self._sweep(), name="hub-slow-client-sweep"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def close_all(self, code: int, grace: float) -> int:
        """Close every WebSocket with ``code``; wait (at most ``grace`` s) until they are gone.

        Used on shutdown so clients see 1001 "going away" from us rather than
        uvicorn's 1012; returns how many connections were still open when asked.
        """
        conns = [*self.prices.connections, *self.news.connections]
        for conn in conns:
            conn.close(code)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # Polling: a one-off wait at shutdown does not justify a detach event on the hot path.
        while (self.prices.connections or self.news.connections) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return len(conns)

    # -- the subscription ----------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except (RedisError, OSError) as exc:
                honour_cancellation()  # redis-py can turn our cancel into a connection error
                self.subscribed = False
                self._outage.failed(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self._backoff.next_delay())

    async def _session(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._keys.prices_channel, self._keys.news_channel)
            await _confirmed(pubsub, 2)
            # redis-py may reconnect and resubscribe on its own inside get_message;
            # whatever was published meanwhile is lost, so treat that as a gap.
            self._reconnected = False
            pubsub.connection.register_connect_callback(self._on_reconnect)
            await self._reload()
            await self.news.resync()
            self.subscribed = True
            self._backoff.reset()
            self._outage.recovered()
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self._wait_seconds()
                )
                honour_cancellation()  # redis-py may have swallowed a cancel (stop())
                if self._retry_at is not None and _now() >= self._retry_at:
                    await self._reload()
                if message is None:
                    await pubsub.ping()
                elif message["type"] == "message" and self._on_message(
                    message["channel"], message["data"]
                ):
                    await self._reload()
                if self._reconnected:
                    self._reconnected = False
                    log.info("redis subscription reconnected; reloading")
                    await self._reload()
                    await self.news.resync()
        finally:
            self.subscribed = False
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _on_reconnect(self, connection: object) -> None:
        self._reconnected = True

    def _wait_seconds(self) -> float:
        if self._retry_at is None:
            return IDLE_PING_SECONDS
        return max(0.0, min(IDLE_PING_SECONDS, self._retry_at - _now()))

    async def _reload(self) -> None:
        seq, quotes = await self.snapshots.load()
        self._retry_at = None
        if self.mirror.loaded and seq < self.mirror.seq:
            now = _now()
            if self._behind_since is None:
                self._behind_since = now
                log.warning(
                    "redis is at seq %d, behind our %d (it lost its data?): serving what we "
                    "hold until a producer restores it",
                    seq,
                    self.mirror.seq,
                )
            if now - self._behind_since < BEHIND_GRACE_SECONDS:
                self._retry_at = now + BEHIND_RETRY_SECONDS
                return
            log.warning(
                "redis stayed behind for %.0fs: adopting its seq %d", now - self._behind_since, seq
            )
        self._behind_since = None
        first = not self.mirror.loaded
        changed = self.mirror.load(seq, quotes)
        self.reloads += 1
        log.info("snapshot at seq %d: %d symbols, %d changed", seq, len(quotes), len(changed))
        self.prices.resync(None if first else changed)

    def _on_message(self, channel: bytes | str, data: bytes) -> bool:
        """Handle one pub/sub message; ``True`` when the snapshot must be reloaded."""
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            message: dict[str, Any] = wire.loads(data)
            kind = message.get("type")
            if channel == self._keys.news_channel:
                if kind == "news":
                    self.news.publish(message["data"])
                return False
            if kind == "reset":
                return True
            if kind != "diff":
                return False
            seq = int(message["seq"])
            diff = message["data"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring malformed message on %s: %s", channel, exc)
            return False
        step = self.mirror.check(seq)
        if step is Step.STALE:
            return False
        if step is Step.GAP:
            log.info("seq gap: have %d, got %d; reloading", self.mirror.seq, seq)
            return True
        self.mirror.apply(seq, diff)
        self.prices.publish_diff(seq, message.get("ts"), diff)
        return False

    # -- slow clients ----------------------------------------------------------

    async def _sweep(self) -> None:
        """Close connections whose one send has been blocked for too long (they do not read)."""
        loop = asyncio.get_running_loop()
        timeout = self._settings.ws_send_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = loop.time()
            for conn in [*self.prices.connections, *self.news.connections]:
                if conn.stuck(now, timeout):
                    log.info("closing %r: a send was blocked for over %.0fs", conn, timeout)
                    conn.close(CLOSE_SLOW_CLIENT)


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _confirmed(pubsub: PubSub, count: int) -> None:
    """Wait until Redis confirms ``count`` subscriptions: only then is loading safe."""
    seen = 0
    while seen < count:
        message = await pubsub.get_message(timeout=10.0)
        if message is None:
            raise RedisError("no subscribe confirmation from Redis")
        if message["type"] == "subscribe":
            seen += 1
