"""The ``/ws/prices`` stream: watchlists, replies and the fan-out of diffs.

Nothing here waits for a client: the subscription calls
:meth:`PriceStream.publish_diff` for each diff straight from its Redis reader,
and the cost is one encode per distinct frame plus, per watching connection, an
outbox merge and a wake. The connection's sender writes the frames later (see
``senders.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.mirror import Mirror
from tickerhub_api.stream.protocol import (
    BAD_VALUE,
    KEEP,
    Command,
    MaxRate,
    Opening,
    ProtocolError,
    Resume,
    ResumePoint,
    encode,
)
from tickerhub_api.stream.streams import Stream, listed
from tickerhub_core import wire


class PriceStream(Stream):
    def __init__(
        self, mirror: Mirror, max_symbols: int, max_unknown: int = 50, max_pending: int = 10_000
    ) -> None:
        super().__init__(max_symbols, mirror, max_unknown, max_pending)
        self._mirror = mirror

    # -- client messages -----------------------------------------------------

    async def _attached(self, conn: Connection, opening: Opening) -> None:
        if opening.symbols is not None:
            self._set_watch(conn, set(opening.symbols))
            conn.announce_watch = True
        if opening.max_rate is not None:
            self._max_rate(conn, MaxRate(opening.max_rate))
        if isinstance(opening.resume, ResumePoint):
            conn.resume_from = opening.resume
        # The first snapshot now, or once the first load happened (resync).
        if self._mirror.loaded:
            self._first_snapshot(conn)

    async def _resume(self, conn: Connection, message: Resume) -> None:
        if not isinstance(message.point, ResumePoint):
            raise ProtocolError(BAD_VALUE, '/ws/prices resumes from {"seq": S, "epoch": "E"}')
        reply: dict[str, Any] = {}
        if message.symbols is not KEEP:
            symbols = message.symbols
            self._set_watch(conn, None if symbols is None else set(symbols))
            reply = {"watchlist": listed(conn.watch), "unknown": self._unknown(symbols or ())}
        if not self._mirror.loaded:
            conn.resume_from = message.point  # answered by the first snapshot
            conn.announce_watch = conn.announce_watch or bool(reply)
            return
        self._answer_resume(conn, message.point, reply)

    def _max_rate(self, conn: Connection, message: MaxRate) -> None:
        rate = message.rate
        conn.min_interval = None if rate is None else 1.0 / rate
        conn.next_diff_at = 0.0  # the new pace starts now
        conn.send_frame(encode({"type": "max_rate", "max_rate": rate}))

    async def _apply(self, conn: Connection, command: Command) -> None:
        symbols = command.symbols
        if command.action == "watchlist":
            self._check_unknown(conn, symbols)
            self._set_watch(conn, None if symbols is None else set(symbols))
            self._queue_snapshot(conn, reply={"watchlist": listed(conn.watch)}, asked=symbols or ())
        elif command.action == "subscribe":
            assert symbols is not None
            self._subscribe(conn, symbols)
        else:
            assert symbols is not None
            self._unsubscribe(conn, symbols)

    def _subscribe(self, conn: Connection, symbols: tuple[str, ...]) -> None:
        watch = conn.watch
        if watch is not None:
            added = [s for s in symbols if s not in watch]
            self._check_room(conn, len(added))
            self._check_unknown(conn, [*watch, *added])
            watch.update(added)
            self._index.watch(conn, added)
            self._watching(added)
        if not self._mirror.loaded:
            return  # the first snapshot, once loaded, covers them
        seq = self._mirror.seq
        # The quotes just sent supersede whatever was pending for them.
        conn.outbox.drop(symbols)
        conn.outbox.floor(seq)
        conn.send_frame(
            encode(
                {
                    "type": "snapshot",
                    "seq": seq,
                    "epoch": self._mirror.epoch,
                    "partial": True,
                    "data": self._mirror.view(symbols),
                    "subscribed": list(symbols),
                    "unknown": self._unknown(symbols),
                    "watchlist": listed(conn.watch),
                }
            )
        )

    def _unsubscribe(self, conn: Connection, symbols: tuple[str, ...]) -> None:
        if conn.watch is None:
            # "Everything but these" becomes an explicit watchlist of today's symbols.
            self._set_watch(conn, set(self._mirror.symbols()).difference(symbols))
        else:
            conn.watch.difference_update(symbols)
            self._index.unwatch(conn, symbols)
        conn.outbox.drop(symbols)
        conn.send_frame(
            encode(
                {
                    "type": "unsubscribed",
                    "symbols": list(symbols),
                    "watchlist": listed(conn.watch),
                }
            )
        )

    def _bars(self, conn: Connection, on: bool) -> None:
        conn.bars = on
        conn.send_frame(encode({"type": "bars", "enabled": on}))

    # -- from the subscription --------------------------------------------------------

    def publish_bars(self, bars: Iterable[Mapping[str, Any]]) -> None:
        """Fan 1-minute bars out, as ``bar`` messages, to the connections that asked for
        bars and watch their symbols. Each bar is encoded once."""
        everything = self._index.everything
        for bar in bars:
            symbol = bar["symbol"]
            frame: str | None = None
            for conns in (everything, self._index.watchers(symbol)):
                for conn in conns:
                    if not (conn.bars and conn.synced):
                        continue
                    if frame is None:
                        frame = encode({"type": "bar", **bar})
                    conn.outbox.push_bar(symbol, bar["t"], frame)
                    conn.wake()

    def publish_diff(self, seq: int, ts: int | None, data: Mapping[str, Mapping[str, Any]]) -> None:
        """Fan one diff (already applied to the mirror) out to the connections that watch it.

        Each distinct frame is encoded once: the whole diff for every connection
        that watches all of its symbols, and each subset of it for the
        connections that watch just that subset.
        """
        frame: str | None = None
        everything = self._index.everything
        if everything:
            frame = wire.diff_message(seq, data, ts).decode()
            for conn in everything:
                if conn.synced:
                    conn.outbox.push_diff(seq, ts, data, frame)
                    conn.wake()
        whole = len(data)
        subsets: dict[str | tuple[str, ...], tuple[dict[str, Mapping[str, Any]], str]] = {}
        for conn, symbols in self._index.split(data).items():
            if not conn.synced:
                continue
            if isinstance(symbols, str):
                key: str | tuple[str, ...] = symbols
                count = 1
            else:
                key = tuple(symbols)
                count = len(symbols)
            if count == whole:
                if frame is None:
                    frame = wire.diff_message(seq, data, ts).decode()
                conn.outbox.push_diff(seq, ts, data, frame)
            else:
                subset = subsets.get(key)
                if subset is None:
                    part = {s: data[s] for s in ((key,) if isinstance(key, str) else key)}
                    subset = subsets[key] = (part, wire.diff_message(seq, part, ts).decode())
                conn.outbox.push_diff(seq, ts, subset[0], subset[1])
            conn.wake()

    def resync(self, changed: set[str] | None = None) -> None:
        """After a (re)load: a fresh snapshot to every connection whose symbols changed.

        ``changed=None`` means every connection. Connections still waiting for their
        first snapshot always get one (or the answer to their resume).
        """
        for conn in self.connections:
            if not conn.synced:
                self._first_snapshot(conn)
            elif changed is None:
                self._queue_snapshot(conn)
            elif conn.watch is None:
                if changed:
                    self._queue_snapshot(conn)
            elif not conn.watch.isdisjoint(changed):
                self._queue_snapshot(conn)

    # -- helpers -------------------------------------------------------------

    def _first_snapshot(self, conn: Connection) -> None:
        """A new connection's first snapshot: the answer to its resume, or a full one."""
        reply: dict[str, Any] | None = None
        if conn.announce_watch:
            conn.announce_watch = False
            watch = conn.watch
            reply = {"watchlist": listed(watch), "unknown": self._unknown(watch or ())}
        point, conn.resume_from = conn.resume_from, None
        if isinstance(point, ResumePoint):
            # The connect-time answer (the URL form, a reconnect) does not echo the
            # watchlist back on a resumed answer.
            self._answer_resume(conn, point, reply or {}, echo=False)
        else:
            self._queue_snapshot(conn, reply)

    def _answer_resume(
        self, conn: Connection, point: ResumePoint, reply: dict[str, Any], echo: bool = True
    ) -> None:
        """Only what changed after ``point`` if it is of this history, else a full snapshot.
        ``echo``: a resumed answer carries ``reply`` (the watchlist) as it is.

        Exact without any log of past diffs: each quote carries the seq of the diff
        that last changed it, and the mirror is the snapshot at ``mirror.seq``.
        """
        mirror = self._mirror
        if point.epoch != mirror.epoch:
            reason = "epoch_changed"
        elif point.seq > mirror.seq:
            reason = "seq_ahead"
        else:
            if point.changed_fields:  # the client merges: changed fields only
                data = mirror.changed_since(point.seq, conn.watch)
            else:
                data = mirror.since(point.seq, conn.watch)
            message: dict[str, Any] = {
                "type": "snapshot",
                "partial": True,
                "resumed": True,
                "seq": mirror.seq,
                "epoch": mirror.epoch,
                "data": data,
            }
            if echo:
                message.update(reply)
            elif reply.get("unknown"):
                # The URL form (a reconnect): no watchlist echo, the client just sent
                # it, and in a reconnect storm the envelope is a large share of a small
                # answer. Unknown symbols only when there are some.
                message["unknown"] = reply["unknown"]
            # The answer covers every change after point.seq: nothing pending is needed.
            conn.outbox.clear_pending()
            conn.outbox.floor(mirror.seq)
            conn.synced = True
            conn.send_frame(encode(message))
            return
        self._queue_snapshot(conn, {**reply, "resumed": False, "reason": reason})

    def _queue_snapshot(
        self,
        conn: Connection,
        reply: dict[str, Any] | None = None,
        asked: Iterable[str] | None = None,
    ) -> None:
        """A ``snapshot`` of the connection's whole watchlist: it replaces the client's state."""
        mirror = self._mirror
        if not mirror.loaded:
            return
        if reply is None and conn.watch is None:
            frame = mirror.full_snapshot_frame()
        else:
            message: dict[str, Any] = {
                "type": "snapshot",
                "seq": mirror.seq,
                "epoch": mirror.epoch,
                "data": mirror.view(conn.watch),
            }
            if reply is not None:
                message.update(reply)
            if asked is not None:
                message["unknown"] = self._unknown(asked)
            frame = encode(message)
        conn.outbox.clear_pending()
        conn.outbox.floor(mirror.seq)
        conn.synced = True
        conn.send_frame(frame)

    def _unknown(self, symbols: Iterable[str]) -> list[str]:
        mirror = self._mirror
        return [s for s in symbols if s not in mirror]
