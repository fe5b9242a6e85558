"""The process's own copy of the snapshot, kept exact by sequence numbers.

Loaded from Redis after subscribing, then advanced diff by diff. A diff that is
not exactly ``seq + 1`` means something was lost; the caller reloads (see the
"Sequence numbers" section of docs/protocol.md).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

from tickerhub_core import wire
from tickerhub_core.models import Quote
from tickerhub_core.store import FieldSeqs


class Step(enum.Enum):
    NEXT = "next"  # seq == last + 1: apply it
    STALE = "stale"  # already included in what we loaded: skip it
    GAP = "gap"  # something was lost, or the sequence restarted: reload


class Mirror:
    def __init__(self) -> None:
        self.seq = 0
        # The snapshot's history id in Redis (see docs/protocol.md, "Epoch"): a resume
        # is answered from this copy only when the client's epoch is this one.
        self.epoch = ""
        self.loaded = False
        self._quotes: dict[str, dict[str, Any]] = {}
        self._full_frame: tuple[int, str] | None = None
        self._full_json: tuple[int, bytes] | None = None
        # Old seqs are expected only for messages queued before the load finished;
        # once a newer diff was applied, an old seq means the sequence restarted
        # (Redis flushed and a producer began again from 1): reload.
        self._applied_since_load = False
        # While no producer is alive (``liveness.py``): the symbols whose ``stale: true``
        # is ours, not Redis's. None (the usual case) costs ``apply`` one attribute test.
        self.forced_stale: set[str] | None = None
        # Per symbol, the seq of the diff that last changed each field (from Redis's
        # ``prices:fields``, then kept by ``apply``): a resume can then send only the
        # fields that changed. None when Redis had no usable record.
        self._field_seqs: dict[str, dict[str, int]] | None = None
        self._fields_floor = 0

    def load(
        self,
        seq: int,
        quotes: Mapping[str, Quote],
        epoch: str = "",
        fields: FieldSeqs | None = None,
    ) -> set[str]:
        """Replace everything; return the symbols whose quote differs (added, changed, gone).

        A new epoch is a new history: every symbol counts as changed, so every
        client gets a snapshot carrying it.
        """
        fresh = {symbol: dict(quote) for symbol, quote in quotes.items()}
        if self.forced_stale is not None:  # still no producer: what Redis holds is stale too
            self.forced_stale = _force_stale(fresh, set())
        old = self._quotes
        if epoch != self.epoch:
            changed = set(fresh.keys() | old.keys())
        else:
            changed = {s for s in fresh.keys() | old.keys() if fresh.get(s) != old.get(s)}
        self._quotes = fresh
        self.seq = seq
        self.epoch = epoch
        if fields is None:
            self._field_seqs = None
        else:
            self._field_seqs = {s: dict(seqs) for s, seqs in fields.symbols.items()}
            self._fields_floor = fields.floor
        self.loaded = True
        self._full_frame = None
        self._full_json = None
        self._applied_since_load = False
        return changed

    def check(self, seq: int) -> Step:
        if seq <= self.seq:
            return Step.GAP if self._applied_since_load else Step.STALE
        if seq == self.seq + 1:
            return Step.NEXT
        return Step.GAP

    def apply(
        self, seq: int, data: Mapping[str, Mapping[str, Any]]
    ) -> Mapping[str, Mapping[str, Any]]:
        """Merge a diff (``check(seq)`` must have said NEXT). New symbols carry every field.

        Returns the diff to fan out: ``data`` itself, unless quotes were marked stale for
        want of a producer; this diff proves one is back, so it also carries
        ``stale: false`` (and this seq) for each of them.
        """
        if self.forced_stale is not None:
            data = self._revive(seq, data)
        quotes = self._quotes
        for symbol, fields in data.items():
            quote = quotes.get(symbol)
            if quote is None:
                quotes[symbol] = dict(fields)
            else:
                quote.update(fields)
        field_seqs = self._field_seqs
        if field_seqs is not None:
            for symbol, fields in data.items():
                seqs = field_seqs.get(symbol)
                if seqs is None:
                    field_seqs[symbol] = dict.fromkeys(fields, seq)
                else:
                    seqs.update(dict.fromkeys(fields, seq))
        self.seq = seq
        self._applied_since_load = True
        return data

    def mark_stale(self) -> dict[str, dict[str, Any]]:
        """No producer is alive: serve every quote as ``stale`` until one is back (here and
        in every later :meth:`load`). Returns the diff entries for the quotes it changed
        (each keeps its own ``seq``: no producer made a new one)."""
        forced = self.forced_stale if self.forced_stale is not None else set()
        fresh = _force_stale(self._quotes, forced)
        self.forced_stale = forced | fresh
        return self._marks(fresh, stale=True)

    def unmark_stale(self) -> dict[str, dict[str, Any]]:
        """A producer is alive again: undo :meth:`mark_stale`; the diff entries to send."""
        forced, self.forced_stale = self.forced_stale or set(), None
        back = {s for s in forced if self._quotes.get(s, {}).get("stale")}
        for symbol in back:
            self._quotes[symbol]["stale"] = False
        return self._marks(back, stale=False)

    def _marks(self, symbols: set[str], *, stale: bool) -> dict[str, dict[str, Any]]:
        if symbols:
            self._full_frame = None  # same seq, different content
            self._full_json = None
        quotes = self._quotes
        return {
            s: {"symbol": s, "seq": quotes[s].get("seq", self.seq), "stale": stale}
            for s in sorted(symbols)
        }

    def _revive(
        self, seq: int, data: Mapping[str, Mapping[str, Any]]
    ) -> Mapping[str, Mapping[str, Any]]:
        forced, self.forced_stale = self.forced_stale or set(), None
        merged = dict(data)
        for symbol in forced:
            fields = data.get(symbol)
            if fields is not None and "stale" in fields:
                continue  # the producer's own word on it
            if symbol not in self._quotes:
                continue
            # This seq changed it as served: resumes from before it must include it.
            merged[symbol] = {**(fields or {"symbol": symbol}), "seq": seq, "stale": False}
        return merged

    def get(self, symbol: str) -> Quote | None:
        # the mirror merges diffs into plain dicts; each holds one Quote's fields
        return self._quotes.get(symbol)  # type: ignore[return-value]

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._quotes

    def __len__(self) -> int:
        return len(self._quotes)

    def symbols(self) -> Iterable[str]:
        return self._quotes.keys()

    def since(self, seq: int, symbols: Iterable[str] | None = None) -> dict[str, Quote]:
        """The quotes (of ``symbols``; ``None``: all) changed by a diff after ``seq``.

        Exact, because each quote's ``seq`` is that of the diff that last changed it.
        """
        quotes = self._quotes
        # Marked stale without a new seq (no producer): a resume must learn it anyway.
        forced = self.forced_stale or ()
        if symbols is None:
            return {s: q for s, q in quotes.items() if q.get("seq", 0) > seq or s in forced}  # type: ignore[misc]
        found = (quotes.get(s) for s in symbols)
        return {
            q["symbol"]: q  # type: ignore[misc]
            for q in found
            if q is not None and (q.get("seq", 0) > seq or q["symbol"] in forced)
        }

    def changed_since(self, seq: int, symbols: Iterable[str] | None = None) -> dict[str, Any]:
        """:meth:`since`, each quote cut to ``symbol``, ``seq`` and the fields changed after
        ``seq``: what a client that held the quotes at ``seq`` must merge (a diff).

        A quote is sent whole when the field record cannot say (none in Redis, a resume
        from before it is complete, quotes marked stale by this process).
        """
        quotes = self.since(seq, symbols)
        field_seqs = self._field_seqs
        if field_seqs is None or seq < self._fields_floor or self.forced_stale is not None:
            return quotes
        cut: dict[str, Any] = {}
        for symbol, quote in quotes.items():
            seqs = field_seqs.get(symbol)
            if seqs is None:
                cut[symbol] = quote
                continue
            fields = {"symbol": symbol, "seq": quote.get("seq", 0)}
            if "stale" in quote:
                # Always: the client may hold a ``stale: true`` that an api before a
                # restart forced (no producer), which no recorded diff ever carried.
                fields["stale"] = quote["stale"]
            for field, changed in seqs.items():
                if changed > seq and field in quote:
                    fields[field] = quote[field]  # type: ignore[literal-required]
            cut[symbol] = fields
        return cut

    def view(self, symbols: Iterable[str] | None = None) -> dict[str, Quote]:
        """Copies are not needed: the result is encoded before the next diff is applied."""
        if symbols is None:
            return dict(self._quotes)  # type: ignore[arg-type]
        quotes = self._quotes
        return {s: quotes[s] for s in symbols if s in quotes}  # type: ignore[misc]

    def full_snapshot_frame(self) -> str:
        """The ``snapshot`` of every symbol, encoded once per seq for every client that wants it."""
        if self._full_frame is None or self._full_frame[0] != self.seq:
            frame = wire.snapshot_message(self.seq, self._quotes, self.epoch).decode()  # type: ignore[arg-type]
            self._full_frame = (self.seq, frame)
        return self._full_frame[1]

    def full_json(self) -> bytes:
        """Every quote as one JSON object (REST ``/tickers``), encoded once per seq: a
        ``/tickers`` flood costs a copy of bytes per request, not an encode."""
        if self._full_json is None or self._full_json[0] != self.seq:
            self._full_json = (self.seq, wire.dumps(self._quotes))
        return self._full_json[1]


def _force_stale(quotes: Mapping[str, dict[str, Any]], forced: set[str]) -> set[str]:
    """Set ``stale: true`` on every quote not stale yet; returns those symbols."""
    marked = set()
    for symbol, quote in quotes.items():
        if not quote.get("stale") and symbol not in forced:
            quote["stale"] = True
            marked.add(symbol)
    return marked
