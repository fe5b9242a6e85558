"""Who watches what: symbol -> connections, plus the connections that watch everything.

A diff then costs work in proportion to the connections that watch its
symbols, never to every connection in the process.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)


class WatchIndex(Generic[C]):
    def __init__(self) -> None:
        self._by_symbol: dict[str, set[C]] = {}
        self._everything: set[C] = set()

    @property
    def everything(self) -> set[C]:
        """Connections without a watchlist (they get every symbol). Do not mutate."""
        return self._everything

    def watch_everything(self, conn: C) -> None:
        self._everything.add(conn)

    def watch(self, conn: C, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            self._by_symbol.setdefault(symbol, set()).add(conn)

    def unwatch(self, conn: C, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            conns = self._by_symbol.get(symbol)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._by_symbol[symbol]

    def remove(self, conn: C, symbols: Iterable[str] | None) -> None:
        """Forget ``conn``; ``symbols`` is its watchlist (``None`` if it watched everything)."""
        self._everything.discard(conn)
        if symbols is not None:
            self.unwatch(conn, symbols)

    def rewatch(self, conn: C, old: Iterable[str] | None, new: Iterable[str] | None) -> None:
        """Replace ``conn``'s watchlist ``old`` by ``new`` (``None``: every symbol)."""
        self.remove(conn, old)
        if new is None:
            self.watch_everything(conn)
        else:
            self.watch(conn, new)

    def symbol_count(self) -> int:
        """Distinct symbols some connection watches by name."""
        return len(self._by_symbol)

    def watchers(self, symbol: str) -> set[C]:
        """Connections with ``symbol`` in their watchlist (not those watching everything)."""
        return self._by_symbol.get(symbol, set())

    def split(self, data: Mapping[str, object]) -> dict[C, str | list[str]]:
        """For each watchlist connection touched by ``data``'s symbols, those symbols.

        A connection touched by one symbol maps to that symbol itself, not a list:
        that is nearly every connection for nearly every diff, and this runs for
        each diff, so it allocates nothing per connection in that case.
        """
        by_symbol = self._by_symbol
        if len(data) == 1:
            [symbol] = data
            conns = by_symbol.get(symbol)
            return dict.fromkeys(conns, symbol) if conns else {}
        out: dict[C, str | list[str]] = {}
        get = out.get
        for symbol in data:
            conns = by_symbol.get(symbol)
            if not conns:
                continue
            for conn in conns:
                seen = get(conn)
                if seen is None:
                    out[conn] = symbol
                elif type(seen) is str:
                    out[conn] = [seen, symbol]
                else:
                    # `type(seen) is str` (cheaper than isinstance here) does not narrow for mypy
                    seen.append(symbol)  # type: ignore[union-attr]
        return out

    def __len__(self) -> int:
        """Number of watched symbols (with at least one watcher)."""
        return len(self._by_symbol)
