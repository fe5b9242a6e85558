"""Ticker symbols: the one place that decides what a plausible symbol is.

Every symbol that reaches a Redis key, a log line or a yfinance call has gone
through :func:`normalize_symbol` first, so no user input can smuggle ``:``,
``*``, spaces or control characters into a key name or a URL.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

MAX_SYMBOL_LENGTH = 20

# Yahoo symbols look like AAPL, BRK-B, ^GSPC, EURUSD=X, BTC-USD, 7203.T, ES=F.
_SYMBOL_RE = re.compile(rf"^\^?[A-Z0-9][A-Z0-9.\-=]{{0,{MAX_SYMBOL_LENGTH - 2}}}$")


class InvalidSymbolError(ValueError):
    """Raised for a string that cannot be a ticker symbol."""

    def __init__(self, symbol: object) -> None:
        shown = repr(symbol)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        super().__init__(f"not a valid ticker symbol: {shown}")
        self.symbol = symbol


def is_valid_symbol(symbol: str) -> bool:
    """True when ``symbol`` (already upper-cased) is a plausible ticker."""
    return bool(_SYMBOL_RE.fullmatch(symbol))


def normalize_symbol(symbol: object) -> str:
    """Return the canonical (upper-case, stripped) form of ``symbol``.

    Raises :class:`InvalidSymbolError` for anything else, including non-strings.
    """
    if not isinstance(symbol, str) or not symbol.isascii():
        # ASCII first: Unicode upper-casing maps "t\u017fla" (long s) to "TSLA" and
        # "\ufb00" (the ff ligature) to "FF".
        raise InvalidSymbolError(symbol)
    canonical = symbol.strip().upper()
    if not _SYMBOL_RE.fullmatch(canonical):
        raise InvalidSymbolError(symbol)
    # Interned: thousands of watchlists then share one string per symbol.
    return sys.intern(canonical)


def parse_symbol_list(raw: str | Iterable[str]) -> list[str]:
    """Parse ``"aapl, MSFT,,msft"`` (or a list) into unique canonical symbols, in order."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    seen: dict[str, None] = {}
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        seen.setdefault(normalize_symbol(item), None)
    return list(seen)
