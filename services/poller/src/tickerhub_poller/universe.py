"""The polled set: ``TICKERS`` plus the symbols clients ask for (symbols on demand).

The api records interest in Redis (``tickerhub_core.interest``); this module re-reads
it every :data:`REFRESH` seconds and starts or stops a ticker task per symbol. The
rule, in Redis time (docs/protocol.md, *Symbols on demand*):

* a symbol asked for within ``INTEREST_TTL`` is polled (at most ``MAX_SYMBOLS`` in all,
  ``TICKERS`` first, then the most recently asked);
* past that it is no longer polled and its quote is marked ``stale``;
* once it has been unasked for twice ``INTEREST_TTL`` its quote is removed from the
  snapshot by a ``reset`` (the diff format has no removal; a reset is the documented way
  a symbol leaves the hub), then its interest and bars are forgotten. All removals due
  go in one reset, at most one such reset per ``INTEREST_TTL``, so clients reload rarely;
* a symbol whose first poll gets :class:`NoDataError` is recorded as unknown (the api
  answers ``unknown_symbol``) and not polled.

Who needs the set (the push stream's subscriber, metrics, the status report) reads
:meth:`Universe.symbols` and registers with :meth:`Universe.subscribe`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError

from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.interest import InterestStore
from tickerhub_core.logs import ConditionLog
from tickerhub_poller.snapshot import Snapshot
from tickerhub_poller.sources.base import NoDataError, SourceError
from tickerhub_poller.tickers import NO_DATA_RETRY, TickerTask

log = logging.getLogger(__name__)

REFRESH = 1.0  # seconds between reads of the interest set


@dataclass(frozen=True, slots=True)
class Plan:
    poll: list[str]  # symbols on demand to poll now
    expired: list[str]  # on demand but no longer polled: their quotes are stale
    remove: list[str]  # expired long enough: out of the snapshot
    static_asked: list[str]  # members that are TICKERS anyway (asked before first published)


def plan(
    scores: Mapping[str, int],
    now_ms: int,
    static: Iterable[str],
    ttl_ms: int,
    room: int,
    exclude: Iterable[str] = (),
) -> Plan:
    """What to poll and what to retire, from the interest set (pure)."""
    static = set(static)
    excluded = set(exclude)
    live = sorted(
        ((score, s) for s, score in scores.items() if s not in static and s not in excluded),
        reverse=True,
    )
    poll = sorted(s for score, s in live[: max(room, 0)] if score >= now_ms - ttl_ms)
    polled = set(poll)
    expired = sorted(s for _, s in live if s not in polled)
    remove = [s for s in expired if scores[s] < now_ms - 2 * ttl_ms]
    static_asked = sorted(s for s in scores if s in static)
    return Plan(poll, expired, remove, static_asked)


class OnDemandTask(TickerTask):
    """A ticker task for a symbol on demand: a :class:`NoDataError` before the symbol
    ever had a quote means the source does not know it (mistyped, delisted)."""

    on_unknown: Callable[[str], None] | None = None

    def _missed(self, exc: SourceError) -> float:
        if (
            isinstance(exc, NoDataError)
            and self.on_unknown is not None
            and self._snapshot.get(self.symbol) is None
        ):
            self.on_unknown(self.symbol)
            return NO_DATA_RETRY  # the universe stops this task
        return super()._missed(exc)


class Universe:
    def __init__(
        self,
        static: Iterable[str],
        make_task: Callable[[str], TickerTask],
        snapshot: Snapshot,
        notify: Callable[[], None],
        remove: Callable[[list[str]], None],
        store: InterestStore | None = None,
        max_symbols: int = 1000,
        ttl: float = 600.0,
    ) -> None:
        self.static = list(static)
        self._make_task = make_task
        self._snapshot = snapshot
        self._notify = notify  # the publisher: something is pending
        self._remove = remove  # the publisher: drop these from the snapshot (a reset)
        self._store = store  # None: ON_DEMAND=false, the set is TICKERS
        self._room = max(0, max_symbols - len(self.static))
        self._ttl_ms = int(ttl * 1000)
        self.on_demand: dict[str, TickerTask] = {}  # read by /metrics (len)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._unknown: set[str] = set()  # found unknown, not yet recorded in Redis
        self._wake = asyncio.Event()
        self._last_removal: int | None = None
        self._redis_down = ConditionLog(log, "redis (symbols on demand)")

    # -- what others read ------------------------------------------------------

    def symbols(self) -> list[str]:
        """Every symbol polled now: TICKERS, then those on demand (sorted)."""
        return [*self.static, *sorted(self.on_demand)]

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever :meth:`symbols` changes."""
        self._listeners.append(listener)

    @property
    def counts(self) -> dict[str, int]:
        """Symbols polled by kind: ``static`` (TICKERS) and ``on_demand``."""
        return {"static": len(self.static), "on_demand": len(self.on_demand)}

    # -- running -----------------------------------------------------------------

    def unknown(self, symbol: str) -> None:
        """The source does not know ``symbol``: stop it, record it at once."""
        log.info("%s: unknown to the source; clients asking get unknown_symbol", symbol)
        self._unknown.add(symbol)
        self._stop(symbol)
        self._changed()
        self._wake.set()

    async def run(self) -> None:
        if self._store is None:
            return
        try:
            while True:
                try:
                    await self.refresh()
                    self._redis_down.recovered()
                except (RedisError, OSError) as exc:
                    self._redis_down.failed(f"cannot read the interest set ({exc})")
                # redis-py may have swallowed a cancel (the leader deposed, shutdown):
                # without this the timeout below never ends the task (cancellation.py).
                honour_cancellation()
                try:
                    async with asyncio.timeout(REFRESH):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            for symbol in list(self._running):
                self._stop(symbol)

    async def refresh(self) -> None:
        """Read the interest set once and act on it."""
        assert self._store is not None
        recording = sorted(self._unknown)
        interest = await self._store.sync(self._room, self._ttl_ms, recording)
        self._unknown.difference_update(recording)
        now = interest.now_ms
        wanted = plan(
            interest.scores, now, self.static, self._ttl_ms, self._room, exclude=self._unknown
        )
        changed = False
        for symbol in set(self.on_demand) - set(wanted.poll):
            log.info("%s: no client asked for it for INTEREST_TTL; no longer polled", symbol)
            self._stop(symbol)
            changed = True
        for symbol in wanted.poll:
            if symbol not in self.on_demand:
                log.info("%s: polled on demand (%d on demand)", symbol, len(self.on_demand) + 1)
                self._start(symbol)
                changed = True
        if changed:
            self._changed()
        self._mark_stale(wanted.expired)
        await self._retire(wanted, now)

    def _mark_stale(self, symbols: Iterable[str]) -> None:
        marked = False
        for symbol in symbols:
            quote = self._snapshot.get(symbol)
            if quote is not None and not quote.get("stale"):
                self._snapshot.update({**quote, "stale": True})
                marked = True
        if marked:
            self._notify()

    async def _retire(self, wanted: Plan, now: int) -> None:
        """Remove what is due (one reset at most per INTEREST_TTL); forget what is gone."""
        assert self._store is not None
        cutoff = now - 2 * self._ttl_ms
        held = [s for s in wanted.remove if self._snapshot.get(s) is not None]
        gone = [s for s in wanted.remove if s not in held]
        if held and (self._last_removal is None or now - self._last_removal >= self._ttl_ms):
            log.info("removing %d expired symbols on demand: %s", len(held), ", ".join(held))
            self._remove(held)
            self._last_removal = now
        if gone:
            await self._store.forget(gone, cutoff)
        if wanted.static_asked:
            await self._store.forget(wanted.static_asked, cutoff, bars=False)

    def _start(self, symbol: str) -> None:
        task = self._make_task(symbol)
        if isinstance(task, OnDemandTask):
            task.on_unknown = self.unknown
        self.on_demand[symbol] = task
        self._running[symbol] = asyncio.create_task(task.run(), name=f"ticker:{symbol}")

    def _stop(self, symbol: str) -> None:
        self.on_demand.pop(symbol, None)
        running = self._running.pop(symbol, None)
        if running is not None:
            running.cancel()

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a listener's bug must not stop polling
                log.exception("symbol set listener failed")
