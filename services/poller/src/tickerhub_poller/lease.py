"""Leadership among pollers: a Redis lease, so that exactly one of them publishes.

The lease is the key ``poller:lease`` (``RedisKeys.poller_lease``) holding the
leader's token with a TTL of ``LEASE_TTL``. A poller takes it with
``SET key token NX PX ttl``; only the holder renews it (``PEXPIRE``) or deletes it,
through scripts that compare the token first, so a poller whose lease lapsed and
was taken by another can never extend or drop the other's.

Redis counts the TTL from when it receives a command; the leader counts its own
lease from *before* it sent the command, on its monotonic clock, and gives up
``margin`` earlier still. So the leader always believes its lease ends before Redis
does, and a write it sends before its own deadline reaches Redis (within the
margin) while the lease is still held. Past its deadline it writes nothing
(:meth:`LeaseTimer.check`, called before every write by ``fencing.py``) and its
publishing tasks are cancelled. A process frozen mid-write (SIGSTOP, a VM pause)
can still deliver one command already on its way: the compare-and-set on
``prices:seq`` in ``PUBLISH_DIFF_LUA`` refuses it once the new leader has published.

Redis losing the key (a restart without persistence) is not a lost lease: the
holder sets it again on its next renewal, and a standby that sees the key vanish
before its TTL ran out leaves it to the holder for one more TTL
(``lease_clock.HolderWatch``).

:class:`LeaseTimer` is the pure state; :class:`Leadership` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.logs import ConditionLog
from tickerhub_poller.lease_clock import HolderWatch, LeaseLost, LeaseTimer

__all__ = ["Leadership", "LeaseLost", "LeaseStore", "LeaseTimer"]

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisError, OSError, TimeoutError)

Job = Callable[[], Coroutine[Any, Any, None]]

# KEYS: the lease. ARGV: token, ttl ms. Extends the lease only for its holder. A key
# that is gone while its holder still counts it as held was lost by Redis (a restart
# without persistence, a flush), never expired: the holder's own deadline comes before
# Redis's expiry. So the holder sets it again, and keeps leading through the restart
# (another poller that took it meanwhile wins: 0).
RENEW_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: the lease. ARGV: token. Deletes the lease only for its holder.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseStore:
    """The lease key's three operations."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key
        self._renew = redis.register_script(RENEW_LUA)
        self._release = redis.register_script(RELEASE_LUA)

    async def take(self, token: str, ttl: float) -> bool:
        return bool(await self._redis.set(self._key, token, nx=True, px=_ms(ttl)))

    async def renew(self, token: str, ttl: float) -> bool:
        return bool(await self._renew(keys=[self._key], args=[token, _ms(ttl)]))

    async def release(self, token: str) -> bool:
        return bool(await self._release(keys=[self._key], args=[token]))

    async def pttl(self) -> int:
        """Milliseconds the lease has left; -2 when there is none, -1 without expiry."""
        return int(await self._redis.pttl(self._key))

    async def holder(self) -> str | None:
        raw = await self._redis.get(self._key)
        return raw.decode() if isinstance(raw, bytes) else raw


def _lease_lost(task: asyncio.Task[None]) -> LeaseLost | None:
    """The LeaseLost that ended ``task``, also from within (nested) exception groups."""
    if task.cancelled():
        return None
    exc: BaseException | None = task.exception()
    while isinstance(exc, BaseExceptionGroup):
        matched = exc.subgroup(LeaseLost)
        exc = matched.exceptions[0] if matched is not None else None
    return exc if isinstance(exc, LeaseLost) else None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def new_token() -> str:
    """Who holds the lease, readable by an operator (``GET poller:lease``), and unique."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Leadership:
    """Alternates between standby and leading, until cancelled.

    ``standby()`` runs while another poller leads (it must not call the source);
    ``lead()`` runs while this poller holds the lease and is cancelled at once when
    the lease cannot be renewed before its deadline, or is found taken.
    """

    def __init__(
        self,
        store: LeaseStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self.timer = LeaseTimer.for_ttl(ttl)
        self.watch = HolderWatch.for_ttl(ttl)
        self.token = new_token()
        self.leading = False  # for /metrics: 1 while lead() runs
        self.terms = 0  # times this poller took the lease, for /metrics
        self._redis_down = ConditionLog(log, "redis (lease)")

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lease is held now (before every write)."""
        self.timer.check(self._clock())

    def held(self) -> bool:
        return self.timer.held(self._clock())

    async def run(self, lead: Job, standby: Job) -> None:
        try:
            while True:
                await self._wait_for_lease(standby)
                await self._lead(lead)
        finally:
            await self.release()

    async def _wait_for_lease(self, standby: Job) -> None:
        task = asyncio.create_task(standby(), name="standby")
        announced = False
        try:
            while True:
                if task.done():
                    task.result()  # standby crashed: let it propagate
                if await self.try_take():
                    return
                if not announced:
                    announced = True
                    log.info("standby: another poller holds the lease; following Redis")
                await asyncio.sleep(self.timer.retry_every * 2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def try_take(self) -> bool:
        """``SET NX`` when the last holder's lease has run out (HolderWatch), else only a
        look at its TTL; True when this poller holds the lease now (Redis errors: False)."""
        sent = self._clock()
        try:
            taken = self.watch.may_take(sent) and await self._store.take(self.token, self._ttl)
            if not taken:
                pttl = await self._store.pttl()
        except REDIS_ERRORS as exc:
            honour_cancellation()
            self._redis_down.failed(f"cannot ask for the lease ({exc})")
            return False
        honour_cancellation()
        self._redis_down.recovered()
        if taken:
            self.timer.taken(sent)
        else:
            self.watch.seen(self._clock(), pttl)
        return taken

    async def _lead(self, lead: Job) -> None:
        self.terms += 1
        log.info("took the lease (%s, ttl %ss): publishing", self.token, self._ttl)
        self.leading = True
        # Two tasks and asyncio.wait rather than a TaskGroup: a TaskGroup cancels the
        # task that awaits it when a child fails, and Python 3.11 leaves that cancel
        # counted (task.cancelling()), which our redis cancel checks would then honour.
        keeper = asyncio.create_task(self._keep(), name="lease")
        leader = asyncio.create_task(lead(), name="leader")
        try:
            await asyncio.wait({keeper, leader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.leading = False
            for task in (keeper, leader):
                task.cancel()
            await asyncio.gather(keeper, leader, return_exceptions=True)
        lost = _lease_lost(keeper) or _lease_lost(leader)
        if lost is None:
            for task in (keeper, leader):  # a crash, not a lost lease: let it propagate
                if not task.cancelled() and task.exception() is not None:
                    task.result()
            raise RuntimeError("the leader stopped by itself")
        log.warning("lost the lease (%s): stopped publishing, back to standby", lost)
        # Gone: a lapsed lease may still name us in Redis for a moment; free it now.
        self.timer.dropped()
        await self.release()

    async def _keep(self) -> None:
        """Renew until a renewal cannot be made before the deadline; then raise."""
        timer = self.timer
        while True:
            await asyncio.sleep(max(0.0, timer.wake_at() - self._clock()))
            now = self._clock()
            timer.check(now)  # raises at the deadline: renewals kept failing
            if now < timer.next_renewal:
                continue
            try:
                assert timer.deadline is not None
                async with asyncio.timeout(max(0.0, timer.deadline - now)):
                    renewed = await self._store.renew(self.token, self._ttl)
            except REDIS_ERRORS as exc:
                honour_cancellation()
                self._redis_down.failed(f"cannot renew the lease ({type(exc).__name__}: {exc})")
                timer.renewal_failed(self._clock())
                continue
            honour_cancellation()
            self._redis_down.recovered()
            if not renewed:
                timer.dropped()
                raise LeaseLost("another poller holds it now")
            timer.renewed(now)

    async def release(self) -> None:
        """Best effort: the lease lapses by itself anyway."""
        try:
            async with asyncio.timeout(1.0):
                await self._store.release(self.token)
        except REDIS_ERRORS as exc:
            log.debug("could not release the lease: %s", exc)
