"""The WebSocket protocol's vocabulary, without any I/O: what a client may say,
the error and close codes, and the server's reply frames.

A client text frame is either ``ping`` or a JSON object with exactly one of
``watchlist``, ``subscribe`` or ``unsubscribe`` holding a list of symbols.
Anything else is a :class:`ProtocolError` whose ``code`` and ``message`` go
back to the client in an ``error`` message; the connection stays open.
"""

from __future__ import annotations

import enum
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
BINARY_NOT_SUPPORTED = "binary_not_supported"
UNAVAILABLE = "unavailable"  # the server cannot answer right now (Redis is down)
RATE_LIMITED = "rate_limited"  # over WS_MAX_MESSAGES_PER_SECOND: the message was not processed

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


def parse_message(text: str, max_symbols: int) -> Ping | Command | BarsOption:
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
    if len(obj) == 1 and "bars" in obj:
        if not isinstance(obj["bars"], bool):
            raise ProtocolError(BAD_TYPE, "'bars' must be true or false")
        return BarsOption(obj["bars"])
    keys = [key for key in obj if key in ACTIONS]
    extra = [key for key in obj if key not in ACTIONS]
    if len(keys) != 1 or extra:
        raise ProtocolError(
            BAD_MESSAGE,
            "expected exactly one of 'watchlist', 'subscribe', 'unsubscribe' (or 'bars')"
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


# -- what the server says ---------------------------------------------------------


def error_frame(code: str, message: str) -> str:
    return wire.error_message(code, message).decode()


def encode(message: dict[str, Any]) -> str:
    """A server message (snapshot, reply) as the text of one frame."""
    return wire.dumps(message).decode()
