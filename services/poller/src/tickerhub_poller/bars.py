"""1-minute OHLCV bars built from every quote the poller sees (pure: no I/O, no clock).

A sample is ``(time, price, day volume)``; its time is the quote's ``market_time``
when it has one (the time of the price), else when the poller saw it. A bar covers
``[t, t + 60 s)`` with ``t`` the minute's start in UTC:

* ``o``/``c``: the price of the earliest/latest sample in the minute (by sample time),
  ``h``/``l``: the highest/lowest, ``n``: how many samples;
* ``v``: how much the day volume rose between consecutive samples whose later one
  falls in this minute. A volume that goes down (a new session, a source correcting
  itself) adds nothing: ``v`` is never negative. The first sample after a start adds
  nothing either (there is nothing to compare it with).

A minute without samples has no bar. A bar is *final* once ``now`` is past its end
plus ``grace`` (late ticks). A sample that still lands in a final bar (a late tick)
corrects it: the bar is published again, still final, with a higher ``revision``.
Every publication of a bar has a higher ``revision`` than the previous one, so a
reader keeps, per ``(symbol, t)``, the bar with the highest revision. Late samples
change ``o/h/l/c/n`` but not ``v``: the volume they carry was already counted by the
later samples' increases.

The open bar is published at most once per ``min_interval`` while it changes,
and once more when it becomes final (:meth:`BarBuilder.due`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MINUTE = 60
# Bars kept per symbol: one trading day at most (a 24-hour market has 1,440 minutes).
MAX_BARS = 1440


@dataclass(slots=True)
class Bar:
    symbol: str
    t: int  # the minute's start, epoch seconds UTC (a multiple of 60)
    o: float
    h: float
    low: float
    c: float
    v: int
    n: int
    final: bool = False
    revision: int = 0
    # When the first and last samples were taken, to place a late sample correctly.
    first_at: float = 0.0
    last_at: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        """The bar as stored and published (``docs/protocol.md``, *Bars*)."""
        return {
            "symbol": self.symbol,
            "t": iso_minute(self.t),
            "o": self.o,
            "h": self.h,
            "l": self.low,
            "c": self.c,
            "v": self.v,
            "n": self.n,
            "final": self.final,
            "revision": self.revision,
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Bar:
        t = parse_minute(raw["t"])
        return cls(
            symbol=raw["symbol"],
            t=t,
            o=raw["o"],
            h=raw["h"],
            low=raw["l"],
            c=raw["c"],
            v=raw["v"],
            n=raw["n"],
            final=raw["final"],
            revision=raw["revision"],
            first_at=float(t),
            last_at=float(t),  # unknown: a sample after a restart is the newest
        )


def iso_minute(t: int) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_minute(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def day_of(t: int) -> int:
    """The UTC day (epoch seconds of its midnight) a bar belongs to."""
    return t - t % 86_400


@dataclass(slots=True)
class _Series:
    bars: dict[int, Bar] = field(default_factory=dict)  # by t, oldest first
    last_volume: int | None = None
    # Bars changed since last published, and when the open bar was last published.
    dirty: set[int] = field(default_factory=set)
    open: set[int] = field(default_factory=set)  # bars not final yet
    published_at: dict[int, float] = field(default_factory=dict)


class BarBuilder:
    def __init__(self, grace: float = 5.0, min_interval: float = 1.0) -> None:
        self.grace = grace
        self.min_interval = min_interval
        self._series: dict[str, _Series] = {}

    def load(self, bars: list[Bar]) -> None:
        """Adopt bars read back from Redis (after a restart): they continue, revisions rise."""
        for bar in sorted(bars, key=lambda b: b.t):
            series = self._series.setdefault(bar.symbol, _Series())
            series.bars[bar.t] = bar
            if not bar.final:
                series.open.add(bar.t)

    def bars(self, symbol: str) -> list[Bar]:
        series = self._series.get(symbol)
        return list(series.bars.values()) if series else []

    def add(self, symbol: str, at: float, price: float | None, volume: int | None) -> None:
        """Record one sample taken at ``at`` (epoch seconds)."""
        series = self._series.setdefault(symbol, _Series())
        increase = 0
        if volume is not None:
            if series.last_volume is not None:
                increase = max(0, volume - series.last_volume)
            series.last_volume = volume
        if price is None:
            return
        t = int(at // MINUTE) * MINUTE
        bar = series.bars.get(t)
        if bar is None:
            newest = max(series.bars, default=None)
            if newest is not None and day_of(t) < day_of(newest):
                return  # a sample from a day already over: not today's bars
            bar = Bar(symbol, t, price, price, price, price, increase, 1, first_at=at, last_at=at)
            series.bars[t] = bar
            series.open.add(t)
            if newest is not None and t < newest:
                series.bars = dict(sorted(series.bars.items()))
            self._trim(series)
        else:
            late = bar.final
            bar.h = max(bar.h, price)
            bar.low = min(bar.low, price)
            if at < bar.first_at:
                bar.o, bar.first_at = price, at
            if at >= bar.last_at:
                bar.c, bar.last_at = price, at
            bar.n += 1
            if not late:
                bar.v += increase
        series.dirty.add(t)

    def due(self, now: float, *, everything: bool = False) -> list[Bar]:
        """The bars to publish now, each with its new ``revision``; marks them published.

        Finalises bars whose minute (plus grace) is over; an open bar that changed is
        due once ``min_interval`` has passed since its last publication, or at once
        with ``everything`` (shutdown: nothing seen is left unwritten).
        """
        out: list[Bar] = []
        for series in self._series.values():
            # Only bars that changed or are still open: not the whole day every time.
            for t in sorted(series.dirty | series.open):
                bar = series.bars[t]
                if not bar.final and now >= t + MINUTE + self.grace:
                    bar.final = True
                    series.open.discard(t)
                    series.dirty.add(t)
                if t not in series.dirty:
                    continue
                if (
                    not everything
                    and not bar.final
                    and now - series.published_at.get(t, -1e18) < self.min_interval
                ):
                    continue
                series.dirty.discard(t)
                series.published_at[t] = now
                if bar.final:
                    series.published_at.pop(t, None)
                bar.revision += 1
                out.append(bar)
        return out

    def _trim(self, series: _Series) -> None:
        """Keep the newest bar's UTC day, and at most :data:`MAX_BARS` bars."""
        bars = series.bars
        day = day_of(max(bars))
        old = [t for t in bars if day_of(t) < day]
        excess = len(bars) - len(old) - MAX_BARS
        if excess > 0:
            old += [t for t in bars if day_of(t) >= day][:excess]
        for t in old:
            del bars[t]
            series.dirty.discard(t)
            series.open.discard(t)
            series.published_at.pop(t, None)
