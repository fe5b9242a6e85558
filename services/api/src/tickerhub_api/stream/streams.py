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

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.protocol import (
    PONG,
    Command,
    Ping,
    ProtocolError,
    error_frame,
    parse_message,
    too_many_symbols,
)
from tickerhub_api.stream.watchers import WatchIndex


class Stream(abc.ABC):
    def __init__(self, max_symbols: int) -> None:
        self._max_symbols = max_symbols
        self._index: WatchIndex[Connection] = WatchIndex()
        self.connections: set[Connection] = set()
        # Plain counters read by /metrics at scrape time (tickerhub_api.metrics).
        self.connects = 0
        self.disconnects: dict[int, int] = {}  # close code -> count
        self.received = 0  # client messages (text or binary frames) after admission
        self.errors: dict[str, int] = {}  # protocol error code -> count
        self.conflated_gone = 0  # outbox merges of connections that have left

    async def attach(self, conn: Connection) -> None:
        """Register a new connection and queue its first snapshot (now, or once loaded)."""
        self.connections.add(conn)
        self.connects += 1
        self._index.watch_everything(conn)
        await self._attached(conn)

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
            else:
                await self._apply(conn, message)
        except ProtocolError as exc:
            self.error(conn, exc.code, exc.message)

    @abc.abstractmethod
    async def _attached(self, conn: Connection) -> None: ...

    @abc.abstractmethod
    async def _apply(self, conn: Connection, command: Command) -> None: ...

    def _check_room(self, conn: Connection, added: int) -> None:
        """Raise the too-many-symbols error if ``added`` more symbols do not fit."""
        watch = conn.watch
        if watch is not None and len(watch) + added > self._max_symbols:
            raise too_many_symbols(self._max_symbols, len(watch), added)

    def _set_watch(self, conn: Connection, watch: set[str] | None) -> None:
        self._index.rewatch(conn, conn.watch, watch)
        conn.watch = watch


def listed(watch: set[str] | None) -> list[str] | None:
    """A watchlist as the protocol shows it: sorted, or ``null`` for every symbol."""
    return None if watch is None else sorted(watch)
