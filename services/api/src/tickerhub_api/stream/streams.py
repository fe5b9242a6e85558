"""What ``/ws/prices`` and ``/ws/news`` have in common: one interface for the routes.

A stream registers connections (:meth:`Stream.attach` queues the first
snapshot), answers their messages (:meth:`Stream.handle_text`: ``ping``, or a
parsed :class:`~tickerhub_api.stream.protocol.Command`; a
:class:`~tickerhub_api.stream.protocol.ProtocolError` becomes an ``error``
frame, the connection stays open) and forgets them (:meth:`Stream.detach`).
``attach`` and ``handle_text`` are coroutines for both streams: news reads
Redis in them, prices never awaits.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.protocol import (
    BAD_MESSAGE,
    PONG,
    BarsOption,
    Command,
    MaxRate,
    Opening,
    Ping,
    ProtocolError,
    Resume,
    error_frame,
    parse_message,
    parse_opening,
    too_many_symbols,
    too_many_unknown,
)
from tickerhub_api.stream.watchers import WatchIndex


class KnownSymbols(Protocol):
    """What a stream asks of the mirror: is a symbol published, and how many are."""

    def __contains__(self, symbol: object) -> bool: ...

    def __len__(self) -> int: ...


class Stream(abc.ABC):
    def __init__(
        self,
        max_symbols: int,
        known: KnownSymbols = (),
        max_unknown: int = 50,
        max_pending: int = 10_000,
    ) -> None:
        self._max_symbols = max_symbols
        self._index: WatchIndex[Connection] = WatchIndex()
        self.connections: set[Connection] = set()
        self._known = known  # the symbols producers have published (the mirror)
        self._max_unknown = max_unknown
        self._max_pending = max_pending
        # Plain counters read by /metrics at scrape time (tickerhub_api.metrics).
        self.connects = 0
        self.disconnects: dict[int, int] = {}  # close code -> count
        self.received = 0  # client messages (text or binary frames) after admission
        self.errors: dict[str, int] = {}  # protocol error code -> count
        self.conflated_gone = 0  # outbox merges of connections that have left
        # Told the symbols a connection starts watching by name (symbols on demand:
        # tickerhub_api.interest); None: nobody asks.
        self.on_watch: Callable[[Iterable[str]], None] | None = None

    async def attach(self, conn: Connection, opening: Opening | None = None) -> None:
        """Register a new connection and queue its first snapshot (now, or once loaded).

        ``opening``: what the URL asked for (watchlist, resume point, max_rate);
        its errors are sent before anything else.
        """
        self.connections.add(conn)
        self.connects += 1
        self._index.watch_everything(conn)
        opening = opening or Opening()
        for error in opening.errors:
            conn.send_frame(error_frame(error.code, error.message))
        await self._attached(conn, opening)

    def opening(self, params: Mapping[str, str]) -> Opening:
        """What the URL's query asks of a new connection (see :func:`parse_opening`)."""
        return parse_opening(params, self._max_symbols)

    def detach(self, conn: Connection) -> None:
        attached = conn in self.connections
        self.connections.discard(conn)
        self._index.remove(conn, conn.watch)
        if not attached:
            return
        # Ours if we closed it, else the client's (1006: it vanished without a close frame).
        code = int(conn.close_code or conn.peer_close_code or 1006)
        self.disconnects[code] = self.disconnects.get(code, 0) + 1
        self.conflated_gone += conn.outbox.conflated

    def count_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def error(self, conn: Connection, code: str, message: str) -> None:
        """Send an ``error`` frame (the connection stays open), counted by code."""
        self.count_error(code)
        conn.send_frame(error_frame(code, message))

    async def handle_text(self, conn: Connection, text: str) -> None:
        """Answer one client text frame."""
        try:
            message = parse_message(text, self._max_symbols)
            if isinstance(message, Ping):
                conn.send_frame(PONG)
            elif isinstance(message, BarsOption):
                self._bars(conn, message.on)
            elif isinstance(message, Command):
                await self._apply(conn, message)
            elif isinstance(message, Resume):
                await self._resume(conn, message)
            else:
                self._max_rate(conn, message)
        except ProtocolError as exc:
            self.error(conn, exc.code, exc.message)

    def _bars(self, conn: Connection, on: bool) -> None:
        raise ProtocolError(BAD_MESSAGE, "'bars' is an option of /ws/prices")

    @abc.abstractmethod
    async def _attached(self, conn: Connection, opening: Opening) -> None: ...

    @abc.abstractmethod
    async def _apply(self, conn: Connection, command: Command) -> None: ...

    async def _resume(self, conn: Connection, message: Resume) -> None:
        raise ProtocolError(BAD_MESSAGE, "'resume' is not supported on this stream")

    def _max_rate(self, conn: Connection, message: MaxRate) -> None:
        raise ProtocolError(BAD_MESSAGE, "'max_rate' is not supported on this stream")

    def _check_room(self, conn: Connection, added: int) -> None:
        """Raise the too-many-symbols error if ``added`` more symbols do not fit."""
        watch = conn.watch
        if watch is not None and len(watch) + added > self._max_symbols:
            raise too_many_symbols(self._max_symbols, len(watch), added)

    def _check_unknown(self, conn: Connection, watch: Iterable[str] | None) -> None:
        """Raise too_many_unknown if ``watch`` (the connection's would-be watchlist) holds
        too many never-published symbols, for it or for the process.

        Each watched symbol costs an index entry; one nobody publishes costs it for
        nothing, for as long as the connection lives. The process-wide count is the
        index's distinct symbols minus the known ones: a lower bound, so the true
        number stays under ``max_pending`` plus the number of known symbols.
        """
        if watch is None:
            return
        known = self._known
        unknown = [s for s in watch if s not in known]
        if len(unknown) > self._max_unknown:
            raise too_many_unknown(self._max_unknown, "per connection")
        mine = conn.watch or ()
        new = sum(1 for s in unknown if s not in mine and not self._index.watchers(s))
        if new and self._index.symbol_count() + new - len(known) > self._max_pending:
            raise too_many_unknown(self._max_pending, "per api process right now")

    def _set_watch(self, conn: Connection, watch: set[str] | None) -> None:
        old = conn.watch
        self._index.rewatch(conn, old, watch)
        conn.watch = watch
        if watch:
            self._watching(watch if old is None else watch - old)

    def _watching(self, symbols: Iterable[str]) -> None:
        if self.on_watch is not None:
            self.on_watch(symbols)

    def watchers(self, symbol: str) -> set[Connection]:
        """The connections watching ``symbol`` by name (not those watching everything)."""
        return self._index.watchers(symbol)

    def forget(self, conn: Connection, symbols: Iterable[str]) -> None:
        """Take ``symbols`` out of the connection's filter (the hub will not have them)."""
        if conn.watch is None:
            return
        symbols = list(symbols)
        conn.watch.difference_update(symbols)
        self._index.unwatch(conn, symbols)
        conn.outbox.drop(symbols)


def listed(watch: set[str] | None) -> list[str] | None:
    """A watchlist as the protocol shows it: sorted, or ``null`` for every symbol."""
    return None if watch is None else sorted(watch)
