"""Symbols on demand, the api side: ask the poller for what clients watch and the hub lacks.

A ``/ws/prices`` connection that watches a symbol by name (``watchlist``, ``subscribe``,
``?symbols=``) tells the :class:`InterestRegistry` (``Stream.on_watch``). The registry
makes one Redis call per round for the whole process (``tickerhub_core.interest``):
new symbols the hub does not hold are asked for, the symbols asked for and not yet
published are checked again every :data:`PENDING_RECHECK` seconds, and every symbol on
demand that a connection here still watches is refreshed every ``INTEREST_TTL / 4``
(at most 30 s), so it stays polled while watched. A symbol the source does not know,
or one past ``MAX_SYMBOLS``, leaves the filters of the connections watching it with an
``unknown_symbol`` / ``capacity`` error. ``GET /tickers/{symbol}`` asks at once and
waits up to ``ON_DEMAND_WAIT`` for the first quote (:meth:`InterestRegistry.first_quote`).
While no poller with ``ON_DEMAND=true`` runs (``interest:config`` missing) nothing is
registered and the answers are the fixed-list hub's (``unknown`` in replies, ``404``).

:class:`InterestBook` is the bookkeeping, pure; :class:`InterestRegistry` the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tickerhub_api.settings import ApiSettings
from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.hub import Hub
from tickerhub_api.stream.protocol import CAPACITY, UNKNOWN_SYMBOL, encode
from tickerhub_api.stream.streams import KnownSymbols, Stream, listed
from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.interest import InterestStore, Outcome
from tickerhub_core.logs import ConditionLog
from tickerhub_core.models import Quote

log = logging.getLogger(__name__)

PENDING_RECHECK = 0.5  # seconds between checks of symbols asked for, not yet published
GATHER = 0.05  # seconds new asks gather before the round that sends them
MAX_REFRESH = 30.0  # seconds: the longest interval between refreshes of watched symbols
REST_POLL = 0.05  # seconds between looks at the mirror while a REST request waits

Read = Callable[[str], Awaitable[tuple[int, str, Quote | None]]]


@dataclass
class InterestBook:
    """Which symbols to send in the next round, and what the answers mean (pure)."""

    new: set[str] = field(default_factory=set)  # asked for by a connection, not sent yet
    pending: set[str] = field(default_factory=set)  # registered, not yet published
    tracked: set[str] = field(default_factory=set)  # on demand, watched here: refreshed
    not_on_demand: set[str] = field(default_factory=set)  # held, but TICKERS/another producer
    waiting: set[str] = field(default_factory=set)  # no on-demand poller yet: asked on refresh

    def asked(self, symbols: Iterable[str], held: KnownSymbols) -> bool:
        """Connections started watching ``symbols``; True if a round should be made."""
        added = False
        for symbol in symbols:
            if symbol in held and (symbol in self.not_on_demand or symbol in self.tracked):
                continue
            if symbol not in self.new:
                self.new.add(symbol)
                added = True
        return added

    def round(
        self, held: KnownSymbols, watched: Callable[[str], bool], refresh: bool
    ) -> tuple[list[str], list[str]]:
        """``(asks, touches)`` for the next call; forgets symbols no connection watches."""
        for symbol in [*self.pending, *self.tracked, *self.waiting]:
            if not watched(symbol):
                self.pending.discard(symbol)
                self.tracked.discard(symbol)
                self.waiting.discard(symbol)
        self.pending = {s for s in self.pending if s not in held}
        candidates = set(self.new) | self.pending
        if refresh:
            candidates |= self.tracked | self.waiting
            self.waiting.clear()
        self.new.clear()
        asks = sorted(s for s in candidates if s not in held and watched(s))
        touches = sorted(s for s in candidates if s in held and watched(s))
        return asks, touches

    def settle(self, outcomes: dict[str, Outcome], held: KnownSymbols) -> dict[str, Outcome]:
        """Record the answers; return the refused symbols (unknown, capacity)."""
        refused: dict[str, Outcome] = {}
        for symbol, outcome in outcomes.items():
            if outcome is Outcome.OK:
                self.tracked.add(symbol)
                if symbol not in held:
                    self.pending.add(symbol)
                continue
            self.pending.discard(symbol)
            self.tracked.discard(symbol)
            if outcome is Outcome.NOT_ON_DEMAND:
                self.not_on_demand.add(symbol)
            elif outcome is Outcome.NO_POLLER:
                # Stays in the filters as today's "unknown"; asked again on each refresh,
                # in case an on-demand poller starts.
                self.waiting.add(symbol)
            else:
                refused[symbol] = outcome
        return refused

    def retry(self, asks: Iterable[str], touches: Iterable[str]) -> None:
        """A round failed (Redis): send these again next time."""
        self.new.update(asks)
        self.new.update(touches)


class OnDemandRefused(Exception):
    """REST: the symbol cannot be served on demand (``status_code``, ``detail``)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class InterestRegistry:
    def __init__(
        self,
        store: InterestStore,
        held: KnownSymbols,
        stream: Stream,
        ttl: float,
        wait: float,
    ) -> None:
        self._store = store
        self._held = held  # the mirror: what the hub holds
        self._stream = stream
        self._refresh = min(MAX_REFRESH, ttl / 4)
        self._wait = wait
        self.book = InterestBook()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._redis_down = ConditionLog(log, "redis (symbols on demand)")
        self.rounds = 0  # Redis calls made by the loop, for tests

    def asked(self, symbols: Iterable[str]) -> None:
        """``Stream.on_watch``: connections now watch ``symbols`` by name."""
        if self.book.asked(symbols, self._held):
            self._wake.set()

    # -- the loop ---------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="interest")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self._refresh
        while True:
            timeout = PENDING_RECHECK if self.book.pending else self._refresh
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            await asyncio.sleep(GATHER)  # one call for everything asked meanwhile
            self._wake.clear()
            refresh = loop.time() >= next_refresh
            if refresh:
                next_refresh = loop.time() + self._refresh
            await self.round(refresh)
            # redis-py may have swallowed a cancel (shutdown): without this the
            # timeout above would never end the task (tickerhub_core.cancellation).
            honour_cancellation()

    async def round(self, refresh: bool) -> None:
        """One Redis call: send what is due, act on the answers."""
        asks, touches = self.book.round(self._held, self._watched, refresh)
        if not asks and not touches:
            return
        self.rounds += 1
        try:
            outcomes = await self._store.register(asks, touches)
        except (RedisError, OSError) as exc:
            self._redis_down.failed(f"cannot register interest, will retry ({exc})")
            self.book.retry(asks, touches)
            return
        self._redis_down.recovered()
        refused = self.book.settle(outcomes, self._held)
        if refused:
            self._refuse(refused)

    def _watched(self, symbol: str) -> bool:
        return bool(self._stream.watchers(symbol))

    def _refuse(self, refused: dict[str, Outcome]) -> None:
        """Take refused symbols out of the filters watching them, with one error each."""
        per_conn: dict[Connection, dict[Outcome, list[str]]] = {}
        for symbol, outcome in sorted(refused.items()):
            for conn in list(self._stream.watchers(symbol)):
                per_conn.setdefault(conn, {}).setdefault(outcome, []).append(symbol)
        for conn, by_outcome in per_conn.items():
            for outcome, symbols in by_outcome.items():
                self._stream.forget(conn, symbols)
                code = UNKNOWN_SYMBOL if outcome is Outcome.UNKNOWN else CAPACITY
                self._stream.count_error(code)
                conn.send_frame(encode(_refusal(code, symbols, listed(conn.watch))))

    # -- REST ---------------------------------------------------------------------

    async def first_quote(self, symbol: str, read: Read) -> tuple[int, str, Quote]:
        """Ask for ``symbol`` (not held) and wait up to ``ON_DEMAND_WAIT`` for its quote.

        Raises :class:`OnDemandRefused` (404 unknown, 503 capacity, 504 no quote in
        time) and ``RedisError`` as the route's other reads do.
        """
        await self._check(symbol)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        recheck = loop.time() + PENDING_RECHECK
        while loop.time() < deadline:
            await asyncio.sleep(REST_POLL)
            seq, epoch, quote = await read(symbol)
            if quote is not None:
                return seq, epoch, quote
            if loop.time() >= recheck:
                recheck = loop.time() + PENDING_RECHECK
                await self._check(symbol)
        raise OnDemandRefused(
            504,
            f"no quote for {symbol} yet: the hub asked its source for it; "
            "try again in a few seconds",
        )

    async def _check(self, symbol: str) -> None:
        outcome = (await self._store.register([symbol], []))[symbol]
        if outcome in (Outcome.UNKNOWN, Outcome.NO_POLLER):  # NO_POLLER: as with ON_DEMAND=false
            raise OnDemandRefused(404, f"unknown symbol: {symbol}")
        if outcome is Outcome.CAPACITY:
            raise OnDemandRefused(
                503,
                f"capacity: the hub polls as many symbols as it may (MAX_SYMBOLS); "
                f"{symbol} cannot be added now",
            )


def _refusal(code: str, symbols: list[str], watchlist: list[str] | None) -> dict[str, object]:
    if code == UNKNOWN_SYMBOL:
        message = f"the source does not know {', '.join(symbols)}: removed from the watchlist"
    else:
        message = (
            f"capacity: the hub polls as many symbols as it may (MAX_SYMBOLS); "
            f"{', '.join(symbols)} removed from the watchlist"
        )
    return {
        "type": "error",
        "code": code,
        "message": message,
        "symbols": symbols,
        "watchlist": watchlist,
    }


def on_demand(redis: Redis, settings: ApiSettings, hub: Hub) -> InterestRegistry | None:
    """The process's registry, hooked to ``/ws/prices``; None with ``ON_DEMAND=false``."""
    if not settings.on_demand:
        return None
    registry = InterestRegistry(
        InterestStore(redis, settings.keys),
        hub.mirror,
        hub.prices,
        settings.interest_ttl,
        settings.on_demand_wait,
    )
    hub.prices.on_watch = registry.asked
    return registry
