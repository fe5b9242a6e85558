"""The WebSocket protocol's vocabulary, without any I/O: what a client may say,
the error and close codes, and the server's reply frames.

A client text frame is either ``ping`` or a JSON object with exactly one of
``watchlist``, ``subscribe`` or ``unsubscribe`` holding a list of symbols,
``{"max_rate": N}``, or ``{"resume": {"seq": S, "epoch": "E"}}`` (optionally
with ``watchlist``). The same values may come on the URL (:func:`parse_opening`).
Anything else is a :class:`ProtocolError` whose ``code`` and ``message`` go
back to the client in an ``error`` message; the connection stays open.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tickerhub_core import wire
from tickerhub_core.symbols import InvalidSymbolError, normalize_symbol

Action = Literal["watchlist", "subscribe", "unsubscribe"]
ACTIONS: tuple[Action, ...] = ("watchlist", "subscribe", "unsubscribe")

# Error codes, part of the public protocol (docs/protocol.md).
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
BAD_TYPE = "bad_type"
BAD_SYMBOL = "bad_symbol"
TOO_MANY_SYMBOLS = "too_many_symbols"
TOO_MANY_UNKNOWN = "too_many_unknown"  # too many watched symbols nobody has published
BINARY_NOT_SUPPORTED = "binary_not_supported"
UNAVAILABLE = "unavailable"  # the server cannot answer right now (Redis is down)
RATE_LIMITED = "rate_limited"  # over WS_MAX_MESSAGES_PER_SECOND: the message was not processed
BAD_VALUE = "bad_value"  # a resume point or max_rate that is not valid: nothing changed
UNKNOWN_SYMBOL = "unknown_symbol"  # the source does not know these: they left the filter
CAPACITY = "capacity"  # MAX_SYMBOLS are polled already: these left the filter

# ``max_rate`` bounds, in diff messages per second for one connection.
MIN_RATE = 0.1
MAX_RATE = 100.0
# An epoch as the hub writes it is 16 hex digits; accept any short token-like string.
_EPOCH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MAX_EPOCH_LENGTH = 64
MAX_NEWS_ID_LENGTH = 200

# The reply to a client's "ping".
PONG = "pong"


class CloseCode(enum.IntEnum):
    """Every close code the api sends, part of the public protocol (docs/protocol.md)."""

    GOING_AWAY = 1001  # server shutting down
    POLICY = 1008  # unauthorized, or persistent rate-limit abuse
    INTERNAL_ERROR = 1011  # writing to this connection failed
    TRY_AGAIN = 1013  # WS_MAX_CONNECTIONS reached
    IDLE = 4000  # no client message for WS_IDLE_TIMEOUT seconds
    SLOW_CLIENT = 4008  # did not read: a send stayed blocked, or too many replies queued

    @property
    def reason(self) -> str:
        """The close frame's reason text (empty where the code says it all)."""
        return _REASONS.get(self, "")


_REASONS = {
    CloseCode.GOING_AWAY: "server shutting down: reconnect",
    CloseCode.SLOW_CLIENT: "slow client: not reading",
    CloseCode.POLICY: "too many messages",
    CloseCode.IDLE: "idle timeout",
}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class BarsOption:
    """``{"bars": true}`` / ``{"bars": false}``: 1-minute bars for the watched symbols."""

    on: bool


@dataclass(frozen=True, slots=True)
class Command:
    action: Action
    # Canonical, unique, in the client's order. ``None`` only for ``{"watchlist": null}``,
    # which means "every symbol" again.
    symbols: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a reconnecting client's view stands: every diff up to ``seq`` of ``epoch``."""

    seq: int
    epoch: str
    # ``fields: "changed"``: the client merges the answer like a diff, so a changed
    # quote may be cut to the fields that changed (its default, "all", sends it whole).
    changed_fields: bool = False


@dataclass(frozen=True, slots=True)
class NewsPoint:
    """Where a reconnecting ``/ws/news`` client stands: the id of its newest item."""

    id: str


@dataclass(frozen=True, slots=True)
class Resume:
    point: ResumePoint | NewsPoint
    # The watchlist to set in the same step: ``KEEP`` (absent), ``None`` (every symbol).
    symbols: tuple[str, ...] | Keep | None


@dataclass(frozen=True, slots=True)
class MaxRate:
    rate: float | None  # diff messages per second; ``None``: as fast as they come


class Keep(enum.Enum):
    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class Opening:
    """What a client asked for on the URL, validated; ``errors`` are sent to it first."""

    resume: ResumePoint | NewsPoint | None = None
    symbols: tuple[str, ...] | None = None
    max_rate: float | None = None
    errors: tuple[ProtocolError, ...] = ()


ClientMessage = Ping | Command | Resume | MaxRate | BarsOption


def parse_message(text: str, max_symbols: int) -> ClientMessage:
    """Parse one client text frame, or raise :class:`ProtocolError`."""
    if text.strip() == "ping":
        return Ping()
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError(
            BAD_JSON, 'expected "ping" or a JSON object such as {"watchlist": ["AAPL"]}'
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_MESSAGE, 'expected a JSON object such as {"watchlist": ["AAPL"]}')
    if "max_rate" in obj and len(obj) == 1:
        return MaxRate(parse_max_rate(obj["max_rate"]))
    if "resume" in obj and (len(obj) == 1 or (len(obj) == 2 and "watchlist" in obj)):
        point = parse_resume(obj["resume"])
        if "watchlist" not in obj:
            return Resume(point, KEEP)
        watch = obj["watchlist"]
        symbols = None if watch is None else parse_symbols("watchlist", watch, max_symbols)
        return Resume(point, symbols)
    if len(obj) == 1 and "bars" in obj:
        if not isinstance(obj["bars"], bool):
            raise ProtocolError(BAD_TYPE, "'bars' must be true or false")
        return BarsOption(obj["bars"])
    keys = [key for key in obj if key in ACTIONS]
    extra = [key for key in obj if key not in ACTIONS]
    if len(keys) != 1 or extra:
        raise ProtocolError(
            BAD_MESSAGE,
            "expected exactly one of 'watchlist', 'subscribe', 'unsubscribe', 'max_rate', "
            "'resume' (or 'bars')"
            + (f"; unknown fields: {', '.join(sorted(map(_short, extra))[:5])}" if extra else ""),
        )
    action: Action = keys[0]
    value = obj[action]
    if value is None and action == "watchlist":
        return Command(action, None)
    return Command(action, parse_symbols(action, value, max_symbols))


def parse_symbols(field: str, value: object, max_symbols: int) -> tuple[str, ...]:
    """A JSON list of symbol strings -> unique canonical symbols (case-insensitive)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProtocolError(BAD_TYPE, f"'{field}' must be a list of symbol strings")
    seen: dict[str, None] = {}
    bad: list[str] = []
    for item in value:
        try:
            seen.setdefault(normalize_symbol(item), None)
        except InvalidSymbolError:
            bad.append(_short(item))
    if bad:
        raise ProtocolError(BAD_SYMBOL, f"not valid ticker symbols: {', '.join(bad[:5])}")
    # Counted after de-duplication: duplicates are ignored, so they cannot exceed the limit.
    # (The frame size limit already bounds how long the raw list can be.)
    if len(seen) > max_symbols:
        raise ProtocolError(
            TOO_MANY_SYMBOLS, f"at most {max_symbols} symbols per connection ({len(seen)} sent)"
        )
    return tuple(seen)


def parse_max_rate(value: object) -> float | None:
    """``null`` or a number of diff messages per second within the bounds."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (MIN_RATE <= value <= MAX_RATE)
    ):
        raise ProtocolError(
            BAD_VALUE,
            f"'max_rate' must be null or a number from {MIN_RATE:g} to {MAX_RATE:g} "
            "(diff messages per second)",
        )
    return float(value)


def parse_resume(value: object) -> ResumePoint | NewsPoint:
    """``{"seq": S, "epoch": "E"[, "fields": "changed"]}`` (prices) or ``{"id": "I"}`` (news)."""
    if isinstance(value, dict) and set(value) in ({"seq", "epoch"}, {"seq", "epoch", "fields"}):
        return resume_point(value["seq"], value["epoch"], value.get("fields", "all"))
    if isinstance(value, dict) and set(value) == {"id"}:
        return news_point(value["id"])
    raise ProtocolError(
        BAD_VALUE,
        '\'resume\' must be {"seq": <int>, "epoch": <string>} (prices, optionally with '
        '"fields": "changed") or {"id": <string>} (news)',
    )


def news_point(item_id: object) -> NewsPoint:
    if not isinstance(item_id, str) or not 0 < len(item_id) <= MAX_NEWS_ID_LENGTH:
        raise ProtocolError(BAD_VALUE, "the news resume point must be the id of a news item")
    return NewsPoint(item_id)


def resume_point(seq: object, epoch: object, fields: object = "all") -> ResumePoint:
    if isinstance(seq, str) and seq.isascii() and seq.isdigit() and len(seq) <= 19:
        seq = int(seq)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise ProtocolError(BAD_VALUE, "the resume seq must be a non-negative integer")
    if (
        not isinstance(epoch, str)
        or not 0 < len(epoch) <= MAX_EPOCH_LENGTH
        or not _EPOCH_CHARS.issuperset(epoch)
    ):
        raise ProtocolError(BAD_VALUE, "the resume epoch must be the epoch of a snapshot")
    if fields not in ("all", "changed"):
        raise ProtocolError(BAD_VALUE, 'the resume \'fields\' must be "changed" or "all"')
    return ResumePoint(seq, epoch, changed_fields=fields == "changed")


def parse_opening(params: Mapping[str, str], max_symbols: int, news: bool = False) -> Opening:
    """``?since=&epoch=[&fields=changed]`` (news: ``?since=<id>``), ``?symbols=A,B`` and
    ``?max_rate=`` from a WebSocket URL.

    A bad value is reported (``errors``) and ignored; the rest still applies.
    """
    errors: list[ProtocolError] = []
    resume: ResumePoint | NewsPoint | None = None
    symbols = max_rate = None
    since, epoch = params.get("since"), params.get("epoch")
    if since is not None or epoch is not None:
        try:
            if news:
                resume = news_point(since)
            elif since is None or epoch is None:
                raise ProtocolError(BAD_VALUE, "a resume needs both 'since' and 'epoch'")
            else:
                resume = resume_point(since, epoch, params.get("fields", "all"))
        except ProtocolError as exc:
            errors.append(exc)
    raw_symbols = params.get("symbols")
    if raw_symbols is not None:
        try:
            listed = [s for s in raw_symbols.split(",") if s.strip()]
            symbols = parse_symbols("symbols", listed, max_symbols)
        except ProtocolError as exc:
            errors.append(exc)
    raw_rate = params.get("max_rate")
    if raw_rate is not None and not news:
        try:
            max_rate = parse_max_rate(_number(raw_rate))
        except ProtocolError as exc:
            errors.append(exc)
    return Opening(resume, symbols, max_rate, tuple(errors))


def _number(text: str) -> object:
    if text in ("", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return value if value == value else text  # NaN is not a rate


def _short(value: str) -> str:
    # Echo user input back only in a bounded, printable form.
    shown = repr(value)
    return shown if len(shown) <= 24 else shown[:21] + "..."


def too_many_symbols(max_symbols: int, watched: int, asked: int) -> ProtocolError:
    """The one error for a subscribe that would take a watchlist over ``max_symbols``."""
    return ProtocolError(
        TOO_MANY_SYMBOLS,
        f"at most {max_symbols} symbols per connection ({watched} watched, {asked} more asked)",
    )


def too_many_unknown(limit: int, where: str) -> ProtocolError:
    """The error for a watchlist change that would hold too many never-published symbols."""
    return ProtocolError(
        TOO_MANY_UNKNOWN,
        f"at most {limit} symbols nobody has published may be watched {where}; "
        "the watchlist is unchanged",
    )


# -- what the server says ---------------------------------------------------------


def error_frame(code: str, message: str) -> str:
    return wire.error_message(code, message).decode()


def encode(message: dict[str, Any]) -> str:
    """A server message (snapshot, reply) as the text of one frame."""
    return wire.dumps(message).decode()
