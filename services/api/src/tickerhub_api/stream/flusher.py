"""Writes every dirty fast-path connection's frames once per event-loop turn.

Marking is cheap (a dict insert; one ``call_soon`` per turn, not per
connection), and everything the hub fanned out during a turn leaves in one
write per connection. Identical frames are framed once per turn and the same
bytes are written to every client that gets them.

Connections under ``max_rate`` whose next diff is not due yet ask to be
flushed later (:meth:`Flusher.later`): one heap for the whole process, one
timer handle for its earliest entry, at most one entry per connection, so
pacing costs no task and no timer per connection.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from typing import Protocol

from tickerhub_api.stream.protocol import CloseCode

log = logging.getLogger(__name__)


class Flushable(Protocol):
    def flush(self, framed: dict[str, bytes]) -> None: ...

    def fail(self, code: CloseCode) -> None: ...


class Flusher:
    def __init__(self) -> None:
        self._dirty: dict[Flushable, None] = {}
        self._handle: asyncio.Handle | None = None
        # max_rate pacing: (due loop time, tie-breaker, target), and when each is due.
        self._timers: list[tuple[float, int, Flushable]] = []
        self._due: dict[Flushable, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._order = itertools.count()
        # Observable counters (tests, a check that the fast path is in use, /metrics).
        self.flushes = 0
        self.writes = 0
        self.frames_sent = 0
        self.bytes_sent = 0  # as written to the transports: WebSocket framing included

    def mark(self, target: Flushable) -> None:
        self._dirty[target] = None
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._flush)

    def later(self, target: Flushable, when: float) -> None:
        """Mark ``target`` again at loop time ``when`` (once, however often asked)."""
        if target in self._due:
            return
        self._due[target] = when
        heapq.heappush(self._timers, (when, next(self._order), target))
        if self._timer is None or when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(when, self._fire)
            self._timer_at = when

    def scheduled(self, target: Flushable) -> bool:
        """Whether ``target`` waits in the timer heap (it will be marked when due)."""
        return target in self._due

    @property
    def paced(self) -> int:
        """Connections waiting for their next diff to be due (bounded by the connections)."""
        return len(self._due)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, target = heapq.heappop(timers)
            del self._due[target]
            self.mark(target)
        if timers:
            self._timer_at = timers[0][0]
            self._timer = loop.call_at(self._timer_at, self._fire)

    def _flush(self) -> None:
        self._handle = None
        self.flushes += 1
        dirty, self._dirty = self._dirty, {}
        # frame text -> framed bytes, for this turn: a diff shared by many clients is
        # encoded and framed once (dict lookups on an identical str are by identity first).
        framed: dict[str, bytes] = {}
        for target in dirty:
            try:
                target.flush(framed)
            except Exception:  # one broken connection must not stop the others
                log.exception("flushing %r failed; closing it", target)
                target.fail(CloseCode.INTERNAL_ERROR)
