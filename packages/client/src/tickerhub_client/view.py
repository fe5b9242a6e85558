"""The merged view of a stream: pure state, no I/O.

Feed it every server message of a connection, in order; it keeps what
docs/protocol.md says a client holds, and turns each message into an event:

- ``/ws/prices`` (:class:`QuoteView`): a full ``snapshot`` replaces the quotes, a
  ``partial`` one (a ``subscribe`` reply, a resume answer) merges them, as a ``diff``
  merges field by field, ``unsubscribed`` drops symbols. ``seq`` and ``epoch`` are
  what a reconnect resumes from.
- ``/ws/news`` (:class:`NewsView`): a ``snapshot`` replaces the items, ``news``
  prepends the new ones.

The same view survives reconnects: a new connection starts with a snapshot, which
either replaces everything or (a resumed one) brings only what changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tickerhub_client.errors import ProtocolError
from tickerhub_client.events import (
    Diff,
    Error,
    Message,
    News,
    NewsItem,
    NewsSnapshot,
    Quote,
    Snapshot,
    Unsubscribed,
)

Frame = str | bytes | Mapping[str, Any]


def decode(frame: Frame) -> Mapping[str, Any] | None:
    """A server frame as a JSON object; ``None`` for the text ``pong``."""
    if type(frame) is dict or isinstance(frame, Mapping):  # dict first: ABC checks are slow
        return frame
    if frame in ("pong", b"pong"):
        return None
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {frame[:80]!r}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(f"not a message with a type: {frame[:80]!r}")
    return message


def _mapping(message: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = message.get(key)
    if type(value) is not dict and not isinstance(value, Mapping):
        raise ProtocolError(f"{message.get('type')} without an object {key!r}")
    return value


def _seq(message: Mapping[str, Any]) -> int:
    seq = message.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ProtocolError(f"{message.get('type')} without an integer 'seq'")
    return seq


class QuoteView:
    """The client's quotes on ``/ws/prices``: ``{symbol: quote}`` at ``seq``.

    ``quotes`` is the state; read it, do not write it (each quote is the view's own
    dict, merged in place by diffs). ``seq`` is the ``seq`` of the last snapshot or diff
    applied (``None`` before the first), ``epoch`` the snapshot's epoch when the server
    sends one, ``watchlist`` the filter as the server last stated it (``None``: every
    symbol, or not stated yet).
    """

    __slots__ = ("epoch", "quotes", "seq", "watchlist")

    def __init__(self) -> None:
        self.quotes: dict[str, Quote] = {}
        self.seq: int | None = None
        self.epoch: str | None = None
        self.watchlist: list[str] | None = None

    def apply(self, frame: Frame) -> Snapshot | Diff | Unsubscribed | Error | Message | None:
        """Apply one server message (decoded or a raw text frame); ``None`` for ``pong``."""
        message = decode(frame)
        if message is None:
            return None
        kind = message.get("type")
        if kind == "diff":
            return self._diff(message)
        if kind == "snapshot":
            return self._snapshot(message)
        if kind == "unsubscribed":
            symbols = list(message.get("symbols") or ())
            for symbol in symbols:
                self.quotes.pop(symbol, None)
            self.watchlist = message.get("watchlist")
            return Unsubscribed(symbols, self.watchlist, raw=message)
        if kind == "error":
            return Error(str(message.get("code")), str(message.get("message", "")), raw=message)
        return Message(str(kind), raw=message)

    def _snapshot(self, message: Mapping[str, Any]) -> Snapshot:
        seq = _seq(message)
        data = _mapping(message, "data")
        partial = bool(message.get("partial"))
        if partial:
            # Merged field by field: a resume with ``fields=changed`` (what the client
            # asks for) brings only the fields that changed; whole quotes merge the same.
            quotes = self.quotes
            for symbol, quote in data.items():
                quotes[symbol] = {**quotes.get(symbol, {}), **quote}
        else:
            self.quotes = {symbol: dict(quote) for symbol, quote in data.items()}
        self.seq = seq
        if "epoch" in message or not partial:
            # A full snapshot without an epoch comes from a server that has none: do
            # not offer it an epoch from another server on the next resume.
            self.epoch = message.get("epoch")
        if "watchlist" in message:
            self.watchlist = message["watchlist"]
        return Snapshot(
            seq=seq,
            data=data,
            partial=partial,
            epoch=self.epoch,
            resumed=message.get("resumed"),
            reason=message.get("reason"),
            watchlist=message.get("watchlist"),
            unknown=list(message.get("unknown") or ()),
            raw=message,
        )

    def _diff(self, message: Mapping[str, Any]) -> Diff:
        seq = _seq(message)
        data = _mapping(message, "data")
        self.merge(data, seq)
        if "epoch" in message:
            self.epoch = message["epoch"]
        return Diff(seq=seq, data=data, ts=message.get("ts"), raw=message)

    def merge(self, data: Mapping[str, Mapping[str, Any]], seq: int) -> None:
        """Merge a diff's ``data`` (the changed fields by symbol) and move to ``seq``.

        What :meth:`apply` does with a ``diff``, without decoding, checks or an event:
        for a caller that has already read the message (a load generator, a client
        filtering the data first) and handles thousands of them a second.
        """
        quotes = self.quotes
        for symbol, fields in data.items():
            quote = quotes.get(symbol)
            if quote is None:
                quotes[symbol] = dict(fields)  # first time seen: it carries every field
            else:
                quote.update(fields)
        self.seq = seq


class NewsView:
    """The client's recent news on ``/ws/news``: ``items``, newest first, unique ids.

    At most ``max_items`` are kept (the oldest go first).
    """

    __slots__ = ("_ids", "items", "max_items", "watchlist")

    def __init__(self, max_items: int = 200) -> None:
        self.items: list[NewsItem] = []
        self.max_items = max_items
        self.watchlist: list[str] | None = None
        self._ids: set[str | None] = set()

    def apply(self, frame: Frame) -> NewsSnapshot | News | Unsubscribed | Error | Message | None:
        """Apply one server message (decoded or a raw text frame); ``None`` for ``pong``."""
        message = decode(frame)
        if message is None:
            return None
        kind = message.get("type")
        if kind == "snapshot":
            items = self._items(message)
            self.items = []
            self._ids = set()
            self._prepend(items)
            if "watchlist" in message:
                self.watchlist = message["watchlist"]
            return NewsSnapshot(
                items,
                watchlist=message.get("watchlist"),
                unknown=list(message.get("unknown") or ()),
                raw=message,
            )
        if kind == "news":
            return News(self._prepend(self._items(message)), raw=message)
        if kind == "unsubscribed":
            self.watchlist = message.get("watchlist")
            return Unsubscribed(list(message.get("symbols") or ()), self.watchlist, raw=message)
        if kind == "error":
            return Error(str(message.get("code")), str(message.get("message", "")), raw=message)
        return Message(str(kind), raw=message)

    @staticmethod
    def _items(message: Mapping[str, Any]) -> list[NewsItem]:
        data = message.get("data")
        if not isinstance(data, list):
            raise ProtocolError(f"news {message.get('type')} without a list 'data'")
        return data

    def _prepend(self, items: list[NewsItem]) -> list[NewsItem]:
        """Add ``items`` (newest first) before the held ones; returns those that were new."""
        fresh: list[NewsItem] = []
        for item in items:
            if item.get("id") not in self._ids:
                self._ids.add(item.get("id"))
                fresh.append(item)
        self.items[:0] = fresh
        for dropped in self.items[self.max_items :]:
            self._ids.discard(dropped.get("id"))
        del self.items[self.max_items :]
        return fresh
