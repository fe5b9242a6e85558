"""A client's merged view of the quotes, and the final-state correctness check.

The merge itself is :class:`tickerhub_client.QuoteView` (snapshots replace or
merge, diffs merge field by field), the one every client and test uses.
:class:`ClientView` adds only what a load test counts around it: updates for
symbols outside the watchlist (a server bug) and updates whose per-symbol ``seq``
is not newer than the view holds (ignored, as the protocol tells readers to do
with diffs older than their snapshot).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tickerhub_client import QuoteView

Quote = dict[str, Any]


class ClientView:
    __slots__ = ("extra", "merged", "skipped", "watch")

    def __init__(self, watch: Iterable[str] | None = None) -> None:
        self.watch: frozenset[str] | None = frozenset(watch) if watch is not None else None
        self.merged = QuoteView()
        self.extra = 0  # updates for symbols outside the watchlist (a server bug)
        self.skipped = 0  # updates not newer than the view (ignored)

    @property
    def quotes(self) -> dict[str, Quote]:
        return self.merged.quotes

    def apply_snapshot(self, message: Mapping[str, Any]) -> None:
        """Apply a ``snapshot`` message, keeping only the watched symbols."""
        watch = self.watch
        data = message.get("data") or {}
        if watch is not None and not watch.issuperset(data):
            message = {**message, "data": {s: q for s, q in data.items() if s in watch}}
        self.merged.apply(message)

    def apply_diff(self, message: Mapping[str, Any]) -> list[int]:
        """Apply a ``diff`` message; return the ``seq`` of every update applied."""
        data: Mapping[str, Mapping[str, Any]] = message.get("data") or {}
        applied: list[int] = []
        kept: dict[str, Mapping[str, Any]] = {}
        watch = self.watch
        quotes = self.merged.quotes
        for sym, fields in data.items():
            if watch is not None and sym not in watch:
                self.extra += 1
                continue
            seq = fields.get("seq", 0)
            current = quotes.get(sym)
            if current is not None and seq <= current.get("seq", -1):
                self.skipped += 1
                continue
            kept[sym] = fields
            applied.append(seq)
        if kept:
            self.merged.merge(kept, message["seq"])
        return applied

    def seq_of(self, symbol: str) -> int:
        quote = self.merged.quotes.get(symbol)
        return -1 if quote is None else quote.get("seq", -1)


def normalize_tickers(payload: Any) -> dict[str, Quote]:
    """``GET /tickers`` as ``{symbol: quote}``, whichever common shape it has.

    Accepts ``{SYM: quote}``, ``[quote, ...]`` and either of those wrapped in
    ``{"data": ...}``, ``{"quotes": ...}`` or ``{"tickers": ...}``.
    """
    if isinstance(payload, dict):
        for key in ("data", "quotes", "tickers"):
            if key in payload and isinstance(payload[key], dict | list):
                return normalize_tickers(payload[key])
        return {sym: dict(q) for sym, q in payload.items() if isinstance(q, dict)}
    if isinstance(payload, list):
        return {q["symbol"]: dict(q) for q in payload if isinstance(q, dict) and "symbol" in q}
    raise ValueError(f"unexpected /tickers payload: {type(payload).__name__}")


def mismatches(
    view: Mapping[str, Quote], expected: Mapping[str, Quote], watch: Iterable[str] | None
) -> list[str]:
    """Symbols (of the watchlist, or of ``expected`` when none) whose quote differs."""
    symbols = sorted(expected) if watch is None else sorted(watch)
    wrong = [sym for sym in symbols if view.get(sym) != expected.get(sym)]
    if watch is None:
        wrong += sorted(set(view) - set(expected))
    return wrong


def converged(view: ClientView, final_seqs: Mapping[str, int]) -> bool:
    """Whether the view has reached the last published ``seq`` of every watched symbol."""
    symbols = final_seqs if view.watch is None else view.watch
    return all(view.seq_of(sym) >= final_seqs.get(sym, -1) for sym in symbols)
