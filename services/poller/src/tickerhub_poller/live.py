"""Yahoo's live price stream beside polling: ticks into the same snapshot -> diff -> Lua path.

A tick is merged over the symbol's latest quote (pending, in flight, or
published: ``Snapshot.get``) and put in the snapshot as pending, exactly like a
poll's quote; the publisher turns whatever is pending into the next diff. So
ticks for one symbol that arrive while a publish is in flight merge in
``Snapshot.pending`` and the next diff carries the latest (latest wins), and a
burst of ticks costs one Lua call per publish, not one per tick.

A tick older than what the hub holds for the symbol is dropped: older than the
last tick applied (ms, the stream's own clock) or than the quote's
``market_time`` (whole seconds, which a poll may have moved on).

The stream's connection (``tickerhub_yahoo.streamer``) is built here from the
settings; its :class:`~tickerhub_yahoo.streamer.StreamState` is what metrics and
``/status`` read, and its up/down drives the polling :class:`Cadence`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any

from tickerhub_core.backoff import Backoff
from tickerhub_core.models import QUOTE_DATA_FIELDS, Quote, make_quote
from tickerhub_poller.cadence import Cadence
from tickerhub_poller.settings import PollerSettings
from tickerhub_poller.snapshot import Snapshot
from tickerhub_poller.status import SourceHealth
from tickerhub_yahoo.pricing import Tick
from tickerhub_yahoo.streamer import YahooStreamer

log = logging.getLogger(__name__)

# Yahoo's marketState words for "nothing trades now": a silent stream is normal then.
CLOSED_STATES = frozenset({"CLOSED", "PREPRE", "POSTPOST"})
_DATA_FIELDS = frozenset(QUOTE_DATA_FIELDS)


def market_time_ms(quote: Quote | None) -> int:
    """The quote's ``market_time`` in ms since the epoch; 0 when it has none (or unparsable)."""
    text = quote.get("market_time") if quote is not None else None
    if not text:
        return 0
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) * 1000
    except (ValueError, TypeError, OverflowError):
        return 0


def merge_tick(last: Quote | None, tick: Tick) -> Quote:
    """The quote after ``tick``: its fields over ``last`` (a fresh quote, not stale)."""
    base: dict[str, Any] = dict(last) if last is not None else dict(make_quote(tick.symbol))
    base.pop("seq", None)  # the hub's bookkeeping, set by the publisher
    base.update((k, v) for k, v in tick.fields.items() if k in _DATA_FIELDS)
    base["symbol"] = tick.symbol
    base["stale"] = False
    return base  # type: ignore[return-value]  # built from a Quote, keys checked above


# What a tick updates: a poll whose market_time is older than the quote's must not
# put these back (the stream moved on); the poll's other fields still count.
TICK_FIELDS = (
    "price",
    "change",
    "change_percent",
    "day_high",
    "day_low",
    "volume",
    "market_time",
    "market_state",
)


def reconcile_poll(last: Quote | None, polled: Quote) -> Quote:
    """A poll's quote, minus what is older than what ``last`` (a tick, say) already has."""
    when = market_time_ms(polled)
    if last is None or not when or when >= market_time_ms(last):
        return polled  # undated polls apply as they always did
    kept: dict[str, Any] = {k: last[k] for k in TICK_FIELDS if k in last}  # type: ignore[literal-required]
    return {**polled, **kept}  # type: ignore[typeddict-item]


def market_open(quotes: Iterable[Quote | None]) -> bool:
    """True when any quote's market may be trading (unknown counts as open)."""
    return any(q is None or q.get("market_state") not in CLOSED_STATES for q in quotes)


class LiveQuotes:
    """Applies stream ticks to the snapshot and asks the publisher to publish."""

    def __init__(self, snapshot: Snapshot, notify: Callable[[], None]) -> None:
        self._snapshot = snapshot
        self._notify = notify
        self._last_ms: dict[str, int] = {}  # the last applied tick's time per symbol
        self.applied = 0
        self.dropped_old = 0  # ticks older than what the hub holds

    def is_old(self, tick: Tick, last: Quote | None) -> bool:
        if not tick.time_ms:
            return False  # undated: cannot be judged, and the stream is ordered anyway
        if tick.time_ms < self._last_ms.get(tick.symbol, 0):
            return True
        # market_time has whole seconds: only a tick from an earlier second is older.
        return tick.time_ms // 1000 * 1000 < market_time_ms(last)

    def apply(self, tick: Tick) -> bool:
        """Put ``tick`` in the snapshot; False when it was dropped as old."""
        last = self._snapshot.get(tick.symbol)
        if self.is_old(tick, last):
            self.dropped_old += 1
            return False
        if tick.time_ms:
            self._last_ms[tick.symbol] = tick.time_ms
        self._snapshot.update(merge_tick(last, tick))
        self._notify()
        self.applied += 1
        return True


def build_stream(
    settings: PollerSettings,
    symbols: Callable[[], Collection[str]],
    live: LiveQuotes,
    snapshot: Snapshot,
    cadence: Cadence,
    health: SourceHealth | None = None,
) -> YahooStreamer:
    """The stream connection for ``settings``, feeding ``live``, driving ``cadence`` and
    reporting to ``health`` (the ``stream`` entry of ``GET /status``)."""

    def any_market_open() -> bool:
        return market_open(snapshot.get(s) for s in symbols())

    def connected(up: bool) -> None:
        cadence.set_streaming(up)
        if health is None:
            return
        if up:
            health.connected()
        else:
            health.disconnected()

    on_tick: Callable[[Tick], object] = live.apply
    if health is not None:

        def on_tick(tick: Tick) -> None:
            live.apply(tick)
            health.tick()

    return YahooStreamer(
        symbols,
        on_tick,
        Backoff(base=0.5, cap=30.0),
        url=settings.stream_url,
        silence=settings.stream_silence,
        market_open=any_market_open,
        on_connected=connected,
        on_failure=health.failed if health is not None else None,
    )
