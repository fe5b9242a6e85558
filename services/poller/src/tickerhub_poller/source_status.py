"""Every source's health together: the status document the poller keeps in Redis.

:class:`SourceStatus` holds one :class:`~tickerhub_poller.status.SourceHealth` per
source (``poll``, ``stream``) and renders the document
:class:`~tickerhub_poller.status_writer.StatusWriter` writes (``source:status``,
docs/protocol.md) for the api's ``GET /status``. The per-source rules live in
``status.py``. Pure logic: no I/O here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from tickerhub_core.models import iso_utc
from tickerhub_poller.status import SourceHealth, State


def overall(states: Iterable[State]) -> State:
    """The hub's data state from its sources': ``ok`` if every source reporting is ok,
    ``down`` if every one is down, else ``degraded`` (data flows through one of them)."""
    known = [s for s in states if s != "unknown"]
    if not known:
        return "unknown"
    if all(s == "ok" for s in known):
        return "ok"
    if all(s == "down" for s in known):
        return "down"
    return "degraded"


def _no_on_demand() -> int:
    return 0


class SourceStatus:
    """Every source's health and what is polled, rendered as the status document.

    ``static_symbols``: how many ``TICKERS`` are polled. ``on_demand_symbols``: a
    callable giving how many symbols are polled because clients asked (the
    on-demand feature wires its count here; 0 without it). ``failing_symbols``:
    how many symbols' last quote batch failed (the batcher's count).
    """

    def __init__(
        self,
        source_name: str,
        static_symbols: int,
        on_demand_symbols: Callable[[], int] = _no_on_demand,
        failing_symbols: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source_name = source_name
        self.static_symbols = static_symbols
        self.on_demand_symbols = on_demand_symbols
        self._clock = clock
        self.started_at = clock()
        self.sources: dict[str, SourceHealth] = {}
        self.poll = self.track("poll", log_conditions=True, failing_symbols=failing_symbols)
        self.on_change: Callable[[], None] | None = None

    def track(
        self,
        name: str,
        *,
        log_conditions: bool = False,
        failing_symbols: Callable[[], int] | None = None,
    ) -> SourceHealth:
        """Register (or return) source ``name``: ``"stream"`` for the push stream.

        A source appears in the document from registration on (``unknown`` until
        it reports). ``log_conditions``: log entering/leaving ``down`` here; off by
        default for sources that log their own conditions (the stream does).
        """
        health = self.sources.get(name)
        if health is None:
            label = self.source_name if name == "poll" else f"{self.source_name} {name}"
            health = SourceHealth(
                name,
                label,
                log_conditions=log_conditions,
                failing_symbols=failing_symbols,
                clock=self._clock,
            )
            health.on_change = self._changed
            self.sources[name] = health
        return health

    def report(
        self,
        source: str,
        event: Literal["connected", "disconnected", "tick", "error"],
        error: BaseException | str | None = None,
    ) -> None:
        """One event of source ``source`` (registered on first use), for callers that
        prefer one entry point: ``report("stream", "connected")``, ``report("stream",
        "error", exc)`` for a failed connect attempt, ``report("stream", "disconnected",
        exc_or_None)``, ``report("stream", "tick")``. Same as the :class:`SourceHealth`
        methods of ``track(source)``."""
        health = self.track(source)
        if event == "connected":
            health.connected()
        elif event == "disconnected":
            health.disconnected(error)
        elif event == "tick":
            health.tick()
        else:
            health.failed(error if error is not None else "error")

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def document(self) -> dict[str, Any]:
        """The status document (docs/protocol.md, ``source:status``)."""
        sources = {name: health.document() for name, health in self.sources.items()}
        return {
            "state": overall(s["state"] for s in sources.values()),
            "source": self.source_name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": iso_utc(self.started_at),
            "written_at": iso_utc(self._clock()),
            "symbols": {"static": self.static_symbols, "on_demand": self.on_demand_symbols()},
            "sources": sources,
        }
