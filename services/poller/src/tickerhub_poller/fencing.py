"""The stores a poller writes through, each write first checking it still holds the lease.

The leader's publishing tasks are cancelled when its lease lapses, but a task
that was ready to run at that moment (all of them, after a SIGSTOP/SIGCONT) may
reach its write first. The check here is synchronous and immediately precedes
the command, so no write starts after the leader's own deadline
(``lease.LeaseTimer``); :class:`~tickerhub_poller.lease.LeaseLost` is not a Redis
error, so no retry loop swallows it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from redis.asyncio import Redis

from tickerhub_core.keys import RedisKeys
from tickerhub_core.models import NewsItem
from tickerhub_core.store import BarStore, NewsStore, PublishResult, SnapshotStore

Check = Callable[[], None]


class FencedSnapshotStore(SnapshotStore):
    def __init__(self, redis: Redis, keys: RedisKeys, check: Check) -> None:
        super().__init__(redis, keys)
        self._check = check

    async def publish_diff(
        self, expected_seq: int, message: bytes, quotes: Mapping[str, bytes]
    ) -> PublishResult:
        self._check()
        return await super().publish_diff(expected_seq, message, quotes)

    async def reset(self, seq: int, quotes: Mapping[str, bytes]) -> None:
        self._check()
        await super().reset(seq, quotes)

    async def beat(self, ttl: float) -> None:
        # Only the leader says "a producer is alive": a standby publishes nothing.
        self._check()
        await super().beat(ttl)


class FencedBarStore(BarStore):
    def __init__(self, redis: Redis, keys: RedisKeys, check: Check) -> None:
        super().__init__(redis, keys)
        self._check = check

    async def publish(self, bars: Iterable[tuple[str, int, int, bytes]], max_bars: int) -> int:
        self._check()
        return await super().publish(bars, max_bars)


class FencedNewsStore(NewsStore):
    def __init__(self, redis: Redis, keys: RedisKeys, check: Check) -> None:
        super().__init__(redis, keys)
        self._check = check

    async def add(self, items: Iterable[NewsItem], max_items: int) -> list[NewsItem]:
        self._check()
        return await super().add(items, max_items)

    async def restore(self, items: Iterable[NewsItem], max_items: int) -> int:
        self._check()
        return await super().restore(items, max_items)
