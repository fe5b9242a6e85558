"""The poller's in-memory snapshot: what Redis holds, and what is waiting to go there.

Pure state, no I/O. Ticker tasks put the latest quote per symbol into
``pending``; the publisher turns everything pending into one diff against
``published`` (so updates that pile up during a Redis outage merge into one
diff instead of queueing), writes it to Redis and commits it here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tickerhub_core import wire
from tickerhub_core.models import Quote
from tickerhub_poller.diff import diff_quote


@dataclass(frozen=True, slots=True)
class PreparedDiff:
    seq: int
    message: bytes  # the diff message to PUBLISH
    quotes: dict[str, Quote]  # full new quotes of the changed symbols
    encoded: dict[str, bytes]  # the same, as the JSON stored in the hash
    taken: dict[str, Quote]  # what was pending, to put back if the write fails


class Snapshot:
    def __init__(self, observer: Callable[[Quote], None] | None = None) -> None:
        self.seq = 0
        self.published: dict[str, Quote] = {}
        self.pending: dict[str, Quote] = {}
        # What the publish under way carries: a stream tick that arrives meanwhile
        # merges over it, not over the older published quote (whose fields the
        # tick lacks would otherwise be put back by the next diff).
        self.in_flight: dict[str, Quote] = {}
        # Sees every quote put here (polls, ticks, stale marks): the 1-minute bars.
        self._observer = observer

    def load(self, seq: int, quotes: dict[str, Quote]) -> None:
        """Adopt what Redis holds (at start, or after another producer moved on)."""
        self.seq = seq
        self.published = quotes

    def update(self, quote: Quote) -> None:
        self.pending[quote["symbol"]] = quote
        if self._observer is not None:
            self._observer(quote)

    def get(self, symbol: str) -> Quote | None:
        return self.pending.get(symbol) or self.in_flight.get(symbol) or self.published.get(symbol)

    def prepare(self) -> PreparedDiff | None:
        """Take everything pending and build the next diff; None when nothing changed."""
        if not self.pending:
            return None
        taken, self.pending = self.pending, {}
        seq = self.seq + 1
        data: dict[str, dict[str, object]] = {}
        quotes: dict[str, Quote] = {}
        for symbol, quote in taken.items():
            changes = diff_quote(self.published.get(symbol), quote)
            if not changes:
                continue
            changes["symbol"] = symbol
            changes["seq"] = seq
            data[symbol] = changes
            quotes[symbol] = {**self.published.get(symbol, {}), **quote, "seq": seq}
        if not data:
            return None
        self.in_flight = taken
        return PreparedDiff(
            seq=seq,
            message=wire.diff_message(seq, data),
            quotes=quotes,
            encoded={s: wire.dumps(q) for s, q in quotes.items()},
            taken=taken,
        )

    def commit(self, prepared: PreparedDiff) -> None:
        self.published.update(prepared.quotes)
        self.seq = prepared.seq
        self.in_flight = {}

    def restore(self, prepared: PreparedDiff) -> None:
        """The write failed: make what it carried pending again, unless newer data came."""
        for symbol, quote in prepared.taken.items():
            self.pending.setdefault(symbol, quote)
        self.in_flight = {}

    def encoded_all(self) -> dict[str, bytes]:
        return {s: wire.dumps(q) for s, q in self.published.items()}
