"""The process's single Redis subscription: read each message, check its seq, hand it on.

One pub/sub connection per api process, whatever the number of clients. Each
message is handled as soon as it is read (a dict merge in the mirror, then the
price stream's fan-out: outbox merges and wakes per watching connection) so the
Redis socket is always drained; no client is awaited here. The frames leave
later through each connection's sender (``senders.py``).

Order matters on (re)connect: subscribe first, then load ``(seq, snapshot)``
in one transaction, then apply only diffs with a higher seq. A diff that is not
``seq + 1`` or a ``reset`` message means something was missed: reload and send
a fresh snapshot to the connections whose symbols changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from tickerhub_api.stream.mirror import Mirror, Step
from tickerhub_api.stream.news import NewsStream
from tickerhub_api.stream.prices import PriceStream
from tickerhub_core import wire
from tickerhub_core.backoff import Backoff
from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.keys import RedisKeys
from tickerhub_core.logs import ConditionLog
from tickerhub_core.metrics import FAST_BUCKETS, Buckets
from tickerhub_core.primary_watch import on_former_primary
from tickerhub_core.store import SnapshotStore

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


class Subscription:
    """Runs until cancelled (:meth:`run`), reconnecting with backoff."""

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        snapshots: SnapshotStore,
        mirror: Mirror,
        prices: PriceStream,
        news: NewsStream,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._snapshots = snapshots
        self.mirror = mirror
        self.prices = prices
        self.news = news
        self.subscribed = False
        self.reloads = 0
        # For /metrics, read at scrape time: reloads by reason, seq gaps, and (when
        # ``timed``) the fan-out's duration and the lag from the producer's ts.
        self.reload_reasons: dict[str, int] = {}
        self.gaps = 0
        self.timed = True
        self.fanout_seconds = Buckets(FAST_BUCKETS)
        self.lag_seconds = Buckets(FAST_BUCKETS)
        self._reconnected = False
        self._behind_since: float | None = None
        self._retry_at: float | None = None
        self._backoff = Backoff(base=0.2, cap=10.0)
        self._outage = ConditionLog(log, "redis subscription")
        # Loop time Redis was last heard from on the subscription (a message or the
        # pong to the idle ping): how old the mirror may be (REST's X-TickerHub-Age).
        self.last_heard: float | None = None
        self._resyncs: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        # Not tickerhub_core.retry.retry_until_done: a session never returns, and
        # recovery (backoff reset, "recovered" log) is when it has subscribed and
        # reloaded, mid-session, not when an attempt returns.
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
            await pubsub.subscribe(
                self._keys.prices_channel, self._keys.news_channel, self._keys.bars_channel
            )
            await _confirmed(pubsub, 3)
            # redis-py may reconnect and resubscribe on its own inside get_message;
            # whatever was published meanwhile is lost, so treat that as a gap.
            self._reconnected = False
            assert pubsub.connection is not None  # subscribe() connected it
            pubsub.connection.register_connect_callback(self._on_reconnect)
            await self._reload("subscribe")
            await self.news.resync()
            self.subscribed = True
            self.last_heard = _now()
            self._backoff.reset()
            self._outage.recovered()
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self._wait_seconds()
                )
                honour_cancellation()  # redis-py may have swallowed a cancel (stop())
                if on_former_primary(self._redis, pubsub.connection):
                    # Sentinel failed over and this node kept us: a new session
                    # subscribes on the new primary and reloads from it.
                    raise RedisConnectionError("the primary moved (Sentinel failover)")
                if message is not None:
                    self.last_heard = _now()
                if self._retry_at is not None and _now() >= self._retry_at:
                    await self._reload("behind")
                if message is None:
                    await pubsub.ping()
                elif message["type"] == "message":
                    reason = self._on_message(message["channel"], message["data"])
                    if reason is not None:
                        await self._reload(reason)
                if self._reconnected:
                    self._reconnected = False
                    log.info("redis subscription reconnected; reloading")
                    await self._reload("reconnect")
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

    async def _reload(self, reason: str) -> None:
        """Load ``(seq, epoch, snapshot)``; ``reason`` (subscribe, gap, reset, reconnect,
        behind) is counted for /metrics."""
        self.reload_reasons[reason] = self.reload_reasons.get(reason, 0) + 1
        snapshot = await self._snapshots.load_snapshot()
        seq, quotes = snapshot.seq, snapshot.quotes
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
        new_epoch = snapshot.epoch != self.mirror.epoch
        changed = self.mirror.load(seq, quotes, snapshot.epoch, snapshot.fields)
        self.reloads += 1
        log.info(
            "snapshot at seq %d (epoch %s%s): %d symbols, %d changed",
            seq,
            snapshot.epoch,
            ", new" if new_epoch and not first else "",
            len(quotes),
            len(changed),
        )
        # A new epoch: every client needs a snapshot that carries it.
        self.prices.resync(None if first or new_epoch else changed)

    def _on_message(self, channel: bytes | str, data: bytes) -> str | None:
        """Handle one pub/sub message; why the snapshot must be reloaded, or ``None``."""
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            message: dict[str, Any] = wire.loads(data)
            kind = message.get("type")
            if channel == self._keys.news_channel:
                if kind == "news":
                    self.news.publish(message["data"])
                elif kind == "reset":  # a producer wrote the news back: fresh snapshots
                    task = asyncio.create_task(self.news.resync())
                    self._resyncs.add(task)
                    task.add_done_callback(self._resyncs.discard)
                return None
            if channel == self._keys.bars_channel:
                # Bars carry their own revision; a missed message is caught up over REST.
                if kind == "bars":
                    self.prices.publish_bars(message["data"])
                return None
            if kind == "reset":
                return "reset"
            if kind != "diff":
                return None
            seq = int(message["seq"])
            diff = message["data"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring malformed message on %s: %s", channel, exc)
            return None
        step = self.mirror.check(seq)
        if step is Step.STALE:
            return None
        if step is Step.GAP:
            log.info("seq gap: have %d, got %d; reloading", self.mirror.seq, seq)
            self.gaps += 1
            return "gap"
        diff = self.mirror.apply(seq, diff)  # plus stale: false if no producer was alive
        ts = message.get("ts")
        if not self.timed:
            self.prices.publish_diff(seq, ts, diff)
            return None
        started = time.perf_counter()
        self.prices.publish_diff(seq, ts, diff)
        self.fanout_seconds.observe(time.perf_counter() - started)
        if isinstance(ts, int | float):
            # Wall clocks of two hosts: a small negative lag is clock skew, not news.
            self.lag_seconds.observe(max(0.0, time.time() - ts / 1000))
        return None


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
