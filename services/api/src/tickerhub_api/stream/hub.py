"""The stream machinery of one api process, assembled: what the routes talk to.

The path of a diff: :class:`~tickerhub_api.stream.subscription.Subscription`
(Redis reader, seq check) -> :class:`~tickerhub_api.stream.mirror.Mirror` ->
:class:`~tickerhub_api.stream.prices.PriceStream` (watch index, outboxes) ->
each connection's sender (``senders.py``: the :class:`~tickerhub_api.stream.flusher.Flusher`
writing through ``fastpath.py``, or an ASGI send task).

The hub also closes connections whose client stopped reading (a sweep) and
every connection on shutdown, and offers REST a narrow read view
(:class:`~tickerhub_api.stream.reads.Reads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.fastpath import FastChannel
from tickerhub_api.stream.flusher import Flusher
from tickerhub_api.stream.liveness import Liveness
from tickerhub_api.stream.mirror import Mirror
from tickerhub_api.stream.news import NewsStream
from tickerhub_api.stream.policy import ConnectionPolicy
from tickerhub_api.stream.prices import PriceStream
from tickerhub_api.stream.protocol import CloseCode
from tickerhub_api.stream.senders import AsgiSender, FastSender, SendCounts, SendText
from tickerhub_api.stream.subscription import Subscription
from tickerhub_core.keys import RedisKeys
from tickerhub_core.store import BarStore, NewsStore, SnapshotStore

log = logging.getLogger(__name__)


class Hub:
    def __init__(
        self, redis: Redis, keys: RedisKeys, policy: ConnectionPolicy, news_limit: int
    ) -> None:
        self.policy = policy
        self.snapshots = SnapshotStore(redis, keys)
        self.news_store = NewsStore(redis, keys)
        self.bar_store = BarStore(redis, keys)
        self.mirror = Mirror()
        self.flusher = Flusher()
        self.asgi_sent = SendCounts()
        self.prices = PriceStream(
            self.mirror, policy.max_symbols, policy.max_unknown, policy.max_pending
        )
        self.news = NewsStream(
            self.news_store,
            news_limit,
            policy.max_symbols,
            self.mirror,
            policy.max_unknown,
            policy.max_pending,
        )
        self.subscription = Subscription(
            redis, keys, self.snapshots, self.mirror, self.prices, self.news
        )
        self.liveness = Liveness(self.mirror, self.prices, self.snapshots)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ready(self) -> bool:
        """Subscribed and holding a snapshot: what ``/readyz`` reports."""
        return self.subscription.subscribed and self.mirror.loaded

    def age(self) -> float | None:
        """Seconds since Redis was last heard from on the subscription (``None``: never).

        With no diffs the subscription pings every 5 s, so this stays under ~5 s
        while Redis is alive; it grows while Redis hangs (SIGSTOP, a frozen VM).
        """
        heard = self.subscription.last_heard
        if heard is None:
            return None
        return max(0.0, asyncio.get_running_loop().time() - heard)

    @property
    def connections(self) -> int:
        return len(self.prices.connections) + len(self.news.connections)

    # -- connections -------------------------------------------------------------

    def fast_connection(self, channel: FastChannel) -> Connection:
        """A connection whose frames the flusher writes to ``channel``."""
        conn = Connection(self.policy.max_frames)
        conn.sender = FastSender(conn, channel, self.flusher)
        return conn

    def asgi_connection(self, send: SendText) -> tuple[Connection, AsgiSender]:
        """A connection sent to by a task running the returned sender's ``run``."""
        conn = Connection(self.policy.max_frames)
        sender = AsgiSender(conn, send, self.asgi_sent)
        conn.sender = sender
        return conn, sender

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.subscription.run(), name="hub-subscription"),
            asyncio.create_task(self._sweep(), name="hub-slow-client-sweep"),
            asyncio.create_task(self.liveness.run(), name="hub-producer-liveness"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def close_all(self, code: CloseCode, grace: float) -> int:
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

    async def _sweep(self) -> None:
        """Close connections whose client has not taken a frame for too long (it does not read)."""
        loop = asyncio.get_running_loop()
        timeout = self.policy.send_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = loop.time()
            for conn in [*self.prices.connections, *self.news.connections]:
                if conn.stuck(now, timeout):
                    log.info(
                        "closing %r: a send was blocked for over %.0fs",
                        conn,
                        timeout,
                        extra={"code": int(CloseCode.SLOW_CLIENT)},
                    )
                    conn.close(CloseCode.SLOW_CLIENT)
