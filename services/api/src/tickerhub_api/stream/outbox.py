"""What is waiting to be sent to one connection, with conflation.

Two parts, sent in this order:

* ``frames``: replies and snapshots, already encoded, in order, bounded;
* one pending ``diff``: every price diff that arrived while a send was in flight,
  merged per symbol and field (the latest value wins). It can never hold more
  than one entry per watched symbol, so a client that reads slowly costs bounded
  memory and simply receives fewer, fuller diffs;
* pending ``bar`` frames, at most one per ``(symbol, minute)``: a newer revision
  of a bar replaces the one not sent yet, so a slow reader gets each bar's latest
  state (a client that reads nothing is closed by the hub's sweep meanwhile).

Sending frames first is correct because a snapshot is built from the mirror at
the time it is queued and so already includes every diff merged before it;
whatever is still pending for other symbols is labelled with the snapshot's seq
(:meth:`Outbox.floor`), so the seq a client sees never goes backwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tickerhub_core import wire

Fields = Mapping[str, Any]


class Outbox:
    def __init__(self, max_frames: int) -> None:
        self._max_frames = max_frames
        # Replies are rare and few: a list (56 bytes empty) rather than a deque
        # (~600 bytes empty) on each of thousands of connections.
        self._frames: list[str] = []
        self._pending: dict[str, Fields] = {}
        # Symbols whose pending field dict is our own copy (the others are shared
        # with the diff they came from and every other connection: copy on write).
        self._owned: set[str] = set()
        # ``_pending`` is the very ``data`` of one diff, whose encoded frame is ``_frame``.
        self._pending_is_diff = False
        self._frame: str | None = None
        self._seq = 0
        self._ts: int | None = None
        # Diffs merged into one still unsent (conflation), for /metrics.
        self.conflated = 0
        self._bars: dict[tuple[str, str], str] | None = None

    def __bool__(self) -> bool:
        return bool(self._frames or self._pending or self._bars)

    def push_bar(self, symbol: str, t: str, frame: str) -> None:
        """Queue a ``bar`` frame; it replaces an unsent one of the same symbol and minute."""
        if self._bars is None:
            self._bars = {}
        self._bars.pop((symbol, t), None)  # re-inserted last: bars leave in arrival order
        self._bars[(symbol, t)] = frame

    @property
    def pending_symbols(self) -> int:
        return len(self._pending)

    @property
    def queued_frames(self) -> int:
        return len(self._frames)

    @property
    def has_diff(self) -> bool:
        return bool(self._pending)

    def push_frame(self, frame: str) -> bool:
        """Queue a reply or snapshot; ``False`` when the bound is exceeded (a stuck client)."""
        if len(self._frames) >= self._max_frames:
            return False
        self._frames.append(frame)
        return True

    def push_diff(
        self, seq: int, ts: int | None, data: Mapping[str, Fields], frame: str | None = None
    ) -> None:
        """Merge a diff. ``frame`` is its encoding when ``data`` is the whole diff.

        With nothing pending, the whole diff is kept by reference and its frame
        reused: encoded once for every client that watches all of its symbols.
        """
        if not self._pending:
            # kept by reference, read only until the first merge copies it (see below)
            self._pending = data  # type: ignore[assignment]
            self._pending_is_diff = True
            self._owned.clear()
            self._frame = frame
        else:
            self.conflated += 1
            pending = self._own_pending()
            owned = self._owned
            for symbol, fields in data.items():
                current = pending.get(symbol)
                if current is None:
                    pending[symbol] = fields
                else:
                    if symbol not in owned:
                        current = pending[symbol] = dict(current)
                        owned.add(symbol)
                    # `current` is our own dict copy here (owned), not the caller's Mapping
                    current.update(fields)  # type: ignore[attr-defined]
        self._seq = max(self._seq, seq)
        self._ts = ts
        if self._frame is not None and seq < self._seq:
            self._frame = None

    def drop(self, symbols: Iterable[str]) -> None:
        """Forget pending changes for ``symbols`` (unwatched, or covered by a queued snapshot)."""
        symbols = tuple(symbols)
        if self._bars:
            gone = set(symbols)
            self._bars = {k: f for k, f in self._bars.items() if k[0] not in gone}
        if not self._pending:
            return
        doomed = [s for s in symbols if s in self._pending]
        if not doomed:
            return
        pending = self._own_pending()
        for symbol in doomed:
            del pending[symbol]
            self._owned.discard(symbol)

    def clear_pending(self) -> None:
        self._pending = {}
        if self._owned:
            self._owned.clear()
        self._pending_is_diff = False
        self._frame = None

    def floor(self, seq: int) -> None:
        """A snapshot at ``seq`` was queued: what follows it may not claim an older seq."""
        if seq > self._seq:
            self._seq = seq
            self._frame = None

    def take(self, diff: bool = True) -> str | None:
        """The next frame to send, or ``None`` when there is nothing.

        ``diff=False``: replies and snapshots only; the pending diff keeps merging
        (a connection under ``max_rate`` whose next diff is not due yet).
        """
        if self._frames:
            return self._frames.pop(0)
        if not self._pending or not diff:
            if self._bars:
                key = next(iter(self._bars))
                return self._bars.pop(key)
            return None
        frame = self._frame
        if frame is None:
            frame = wire.diff_message(self._seq, self._pending, self._ts).decode()
        self.clear_pending()
        return frame

    def _own_pending(self) -> dict[str, Fields]:
        if self._pending_is_diff:
            self._pending = dict(self._pending)
            self._pending_is_diff = False
            self._frame = None
        return self._pending
