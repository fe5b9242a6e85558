"""What a client yields: one small frozen dataclass per kind of server message or
connection change. ``raw`` keeps the message as received, so fields this version does
not know about are not lost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Quote = dict[str, Any]
NewsItem = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """``/ws/prices`` snapshot. ``partial``: merged into the view, else it replaced it.

    ``resumed`` is ``True`` when the server answered a resume with only what changed,
    ``False`` when it refused one (``reason`` says why), ``None`` when no resume was asked.
    """

    seq: int
    data: Mapping[str, Quote]
    partial: bool = False
    epoch: str | None = None
    resumed: bool | None = None
    reason: str | None = None
    watchlist: list[str] | None = None
    unknown: list[str] = field(default_factory=list)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Diff:
    """``/ws/prices`` diff: ``data`` holds only the changed fields of the changed symbols."""

    seq: int
    data: Mapping[str, Quote]
    ts: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The answer to ``unsubscribe``: ``symbols`` left the view; ``watchlist`` is the filter."""

    symbols: list[str]
    watchlist: list[str] | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Error:
    """An ``error`` message (``bad_symbol``, ``rate_limited``, ``unavailable``, …).

    The connection stays open and nothing changed; see docs/protocol.md for the codes.
    """

    code: str
    message: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class NewsSnapshot:
    """``/ws/news`` snapshot: the recent items (newest first) that replace the client's list."""

    items: list[NewsItem]
    watchlist: list[str] | None = None
    unknown: list[str] = field(default_factory=list)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class News:
    """``/ws/news``: items published since the last message, never seen before."""

    items: list[NewsItem]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Message:
    """A server message of a type this client does not model (e.g. a newer server's)."""

    type: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection is open (``attempt`` 0 is the first; later ones are reconnects)."""

    url: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The connection was lost (``code``/``reason`` when the server closed it, else ``None``);
    the client tries again in ``delay`` seconds. The view keeps its last state meanwhile."""

    attempt: int
    delay: float
    code: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Closed:
    """The client was closed (``close()`` or leaving ``async with``): iteration ends."""

    code: int | None = None
    reason: str | None = None


PriceEvent = Snapshot | Diff | Unsubscribed | Error | Message
NewsEvent = NewsSnapshot | News | Unsubscribed | Error | Message
ConnectionEvent = Connected | Reconnecting | Closed
Event = PriceEvent | NewsEvent | ConnectionEvent
