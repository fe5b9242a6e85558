"""What a WebSocket client may say, parsed without any I/O.

A client text frame is either ``ping`` or a JSON object with exactly one of
``watchlist``, ``subscribe`` or ``unsubscribe`` holding a list of symbols.
Anything else is a :class:`ProtocolError` whose ``code`` and ``message`` go
back to the client in an ``error`` message; the connection stays open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

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

# Close codes sent by routes/ws.py (4008 is in connection.py), part of the public protocol.
CLOSE_POLICY = 1008  # unauthorized, or persistent rate-limit abuse
CLOSE_TRY_AGAIN = 1013  # WS_MAX_CONNECTIONS reached
CLOSE_IDLE = 4000  # no client message for WS_IDLE_TIMEOUT seconds


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Command:
    action: Action
    # Canonical, unique, in the client's order. ``None`` only for ``{"watchlist": null}``,
    # which means "every symbol" again.
    symbols: tuple[str, ...] | None


def parse_message(text: str, max_symbols: int) -> Ping | Command:
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
    keys = [key for key in obj if key in ACTIONS]
    extra = [key for key in obj if key not in ACTIONS]
    if len(keys) != 1 or extra:
        raise ProtocolError(
            BAD_MESSAGE,
            "expected exactly one of 'watchlist', 'subscribe', 'unsubscribe'"
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
