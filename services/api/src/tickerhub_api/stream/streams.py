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
    BAD_MESSAGE,
    PONG,
    BarsOption,
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

    async def attach(self, conn: Connection) -> None:
        """Register a new connection and queue its first snapshot (now, or once loaded)."""
        self.connections.add(conn)
        self._index.watch_everything(conn)
        await self._attached(conn)

    def detach(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self._index.remove(conn, conn.watch)

    async def handle_text(self, conn: Connection, text: str) -> None:
        """Answer one client text frame."""
        try:
            message = parse_message(text, self._max_symbols)
            if isinstance(message, Ping):
                conn.send_frame(PONG)
            elif isinstance(message, BarsOption):
                self._bars(conn, message.on)
            else:
                await self._apply(conn, message)
        except ProtocolError as exc:
            conn.send_frame(error_frame(exc.code, exc.message))

    def _bars(self, conn: Connection, on: bool) -> None:
        raise ProtocolError(BAD_MESSAGE, "'bars' is an option of /ws/prices")

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
