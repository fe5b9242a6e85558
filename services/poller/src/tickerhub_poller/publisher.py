"""Writes the snapshot's pending changes to Redis, one atomic diff at a time.

Runs as one task. It survives Redis going away: a failed write leaves the
changes pending (newer quotes merge over them), and it retries with backoff.
When it finds Redis behind its own sequence number (Redis restarted empty) it
writes its whole snapshot back with a ``reset``; when Redis is ahead (another
producer wrote), it reloads and diffs again. Either way the snapshot in Redis
ends equal to its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from redis.exceptions import RedisError

from tickerhub_core import wire
from tickerhub_core.backoff import Backoff
from tickerhub_core.logs import ConditionLog
from tickerhub_core.retry import retry_until_done
from tickerhub_core.store import SnapshotStore
from tickerhub_poller.snapshot import Snapshot

log = logging.getLogger(__name__)

# Seconds the producer heartbeat key lives: several check intervals, so one slow
# round trip does not make a live poller look dead.
HEARTBEAT_TTL = 30.0
REDIS_ERRORS = (RedisError, OSError)


class Publisher:
    def __init__(
        self,
        store: SnapshotStore,
        snapshot: Snapshot,
        check_interval: float = 5.0,
        backoff: Backoff | None = None,
        heartbeat: Callable[[], None] | None = None,
        on_write_back: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        # Called after the snapshot was written back to a Redis that lost it: the news
        # poller writes its news back too.
        self._on_write_back = on_write_back
        self._snapshot = snapshot
        self._check_interval = check_interval
        self._backoff = backoff or Backoff(base=0.2, cap=10.0)
        self._heartbeat = heartbeat
        self._last_check = -float("inf")
        self._dirty = asyncio.Event()
        self._redis_down = ConditionLog(log, "redis")
        self.published = 0  # diffs published, for tests and metrics
        self.conflicts = 0  # compare-and-set refusals (Redis's seq was not ours), for metrics
        self._removals: set[str] = set()  # symbols to drop from the snapshot (on demand, expired)

    @property
    def redis_up(self) -> bool:
        """False while writes to Redis fail (a logged outage is in progress)."""
        return not self._redis_down.active

    def notify(self) -> None:
        """Something is pending: publish soon (coalesces with other notifications)."""
        self._dirty.set()

    def remove(self, symbols: Iterable[str]) -> None:
        """Drop ``symbols`` from the snapshot soon, in one ``reset`` (the diff format cannot
        remove a symbol; docs/protocol.md, *Symbols on demand*)."""
        self._removals.update(symbols)
        self.notify()

    async def load(self) -> None:
        """Adopt Redis's snapshot, waiting for Redis as long as it takes."""
        seq, quotes = await retry_until_done(
            self._store.load,
            errors=REDIS_ERRORS,
            backoff=self._backoff,
            condition=self._redis_down,
            describe=lambda exc: f"cannot load the snapshot ({exc})",
        )
        self._snapshot.load(seq, quotes)
        log.info("loaded snapshot at seq %d with %d symbols", seq, len(quotes))

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._check_interval):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            self._dirty.clear()
            # Failed writes leave the changes pending; the retry publishes them
            # (and whatever arrived meanwhile). Its cancel check matters here: after
            # a swallowed cancel, the wait above under asyncio.timeout would never
            # end (see cancellation.py).
            await retry_until_done(
                self._flush_and_check,
                errors=REDIS_ERRORS,
                backoff=self._backoff,
                condition=self._redis_down,
                describe=lambda exc: f"write failed, will retry ({exc})",
            )
            if self._heartbeat is not None:
                self._heartbeat()

    async def _flush_and_check(self) -> None:
        await self.flush()
        await self.check()

    async def flush(self) -> None:
        """Publish everything pending; resolve a sequence mismatch and retry."""
        if self._removals:
            await self._remove()
        for _ in range(10):
            prepared = self._snapshot.prepare()
            if prepared is None:
                return
            try:
                result = await self._store.publish_diff(
                    self._snapshot.seq, prepared.message, prepared.encoded
                )
            except BaseException:
                self._snapshot.restore(prepared)
                raise
            if result.ok:
                self._snapshot.commit(prepared)
                self.published += 1
                return
            self._snapshot.restore(prepared)
            self.conflicts += 1
            await self._resync(result.seq)
        raise RedisError("sequence kept moving under us: another producer is racing")

    async def check(self) -> None:
        """At most every ``check_interval``: catch a Redis that restarted empty even when
        nothing is changing, and say we are alive.

        Not after every publish: a publish that succeeded has just proved the seq
        matches (its compare-and-set), so a GET there would only add a round trip.
        """
        now = time.monotonic()
        if now - self._last_check < self._check_interval:
            return
        redis_seq = await self._store.load_seq()
        if redis_seq != self._snapshot.seq:
            await self._resync(redis_seq)
        # Readers (the api's /readyz) tell a live producer from a dead one by this key.
        await self._store.beat(ttl=HEARTBEAT_TTL)
        self._last_check = now

    async def _remove(self) -> None:
        """Write the snapshot back without the symbols to remove, as a ``reset`` at the next
        seq: readers reload, and a resume from before it is refused (a new epoch)."""
        redis_seq = await self._store.load_seq()
        if redis_seq != self._snapshot.seq:
            await self._resync(redis_seq)
        snapshot = self._snapshot
        for symbol in self._removals:
            snapshot.pending.pop(symbol, None)
        kept = {s: q for s, q in snapshot.published.items() if s not in self._removals}
        if len(kept) < len(snapshot.published):
            new_seq = snapshot.seq + 1
            await self._store.reset(new_seq, {s: wire.dumps(q) for s, q in kept.items()})
            snapshot.published = kept
            snapshot.seq = new_seq
        self._removals.clear()

    async def _resync(self, redis_seq: int) -> None:
        snapshot = self._snapshot
        if redis_seq < snapshot.seq:
            # Redis lost what we wrote (restart without persistence): write it back.
            # The sequence keeps rising, so readers see a jump and reload.
            new_seq = snapshot.seq + 1
            log.warning(
                "redis is at seq %d, behind our %d: rewriting %d symbols at seq %d",
                redis_seq,
                snapshot.seq,
                len(snapshot.published),
                new_seq,
            )
            await self._store.reset(new_seq, snapshot.encoded_all())
            snapshot.seq = new_seq
            if self._on_write_back is not None:
                await self._on_write_back()
        else:
            log.info("redis is at seq %d, ahead of our %d: reloading", redis_seq, snapshot.seq)
            seq, quotes = await self._store.load()
            snapshot.load(seq, quotes)
