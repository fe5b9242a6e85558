"""A client's merged view of the quotes, and the final-state correctness check.

A client applies the snapshot, then every diff on top of it (latest field value
wins). Each quote carries the ``seq`` of the diff that last changed it, and the
per-symbol ``seq`` only grows, so an update whose ``seq`` is not newer than
what the view holds is ignored (that is what the protocol tells readers to do
with diffs older than their snapshot).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Quote = dict[str, Any]


class ClientView:
    __slots__ = ("extra", "quotes", "skipped", "watch")

    def __init__(self, watch: Iterable[str] | None = None) -> None:
        self.watch: frozenset[str] | None = frozenset(watch) if watch is not None else None
        self.quotes: dict[str, Quote] = {}
        self.extra = 0  # updates for symbols outside the watchlist (a server bug)
        self.skipped = 0  # updates not newer than the view (ignored)

    def apply_snapshot(self, data: Mapping[str, Mapping[str, Any]]) -> None:
        watch = self.watch
        self.quotes = {
            sym: dict(quote) for sym, quote in data.items() if watch is None or sym in watch
        }

    def apply_diff(self, data: Mapping[str, Mapping[str, Any]]) -> list[int]:
        """Merge one diff's ``data``; return the ``seq`` of every update applied."""
        applied: list[int] = []
        watch = self.watch
        quotes = self.quotes
        for sym, fields in data.items():
            if watch is not None and sym not in watch:
                self.extra += 1
                continue
            seq = fields.get("seq", 0)
            current = quotes.get(sym)
            if current is None:
                quotes[sym] = dict(fields)
            elif seq > current.get("seq", -1):
                current.update(fields)
            else:
                self.skipped += 1
                continue
            applied.append(seq)
        return applied

    def seq_of(self, symbol: str) -> int:
        quote = self.quotes.get(symbol)
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
