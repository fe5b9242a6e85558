"""One frame of Yahoo's price stream (a ``PricingData`` message) -> quote fields (pure).

The field names produced are TickerHub's quote fields
(``tickerhub_core.models.QUOTE_DATA_FIELDS``); this package does not import
``tickerhub_core``, the poller's tests check the names match.

Yahoo's ``PricingData`` is proto3: a field that is zero or empty is not on the
wire and decodes as ``0``/``""``. So a zero here means "not in this frame" and
the field is left out (the poller keeps the value it had), with one exception:
``change`` and ``change_percent`` of a frame that carries a price are ``0.0``
when absent, because a genuine zero change is exactly what proto3 drops.
Prices are ``float`` (32-bit) on the wire; they are rounded to 7 significant
digits so 225.44 reads 225.44, not 225.44000244140625.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# PricingData.market_hours (Yahoo's MarketHoursType enum) -> the v7 quote's
# ``marketState`` words, so a streamed quote reads like a polled one.
MARKET_STATES: dict[int, str] = {0: "PRE", 1: "REGULAR", 2: "POST", 3: "POSTPOST"}

# Times above this are milliseconds (Yahoo sends ms); below, seconds.
_MS_THRESHOLD = 100_000_000_000


@dataclass(frozen=True, slots=True)
class Tick:
    """What one frame says about one symbol."""

    symbol: str  # upper-case, as Yahoo spells it
    time_ms: int  # the trade time in ms since the epoch; 0 when the frame has none
    fields: dict[str, Any]  # quote fields this frame carries (price always)


def _f32(value: Any) -> float | None:
    """A 32-bit float from the wire as the decimal it was meant to be; None when absent."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or number == 0.0:
        return None
    return float(f"{number:.7g}")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def time_ms(value: Any) -> int:
    """``PricingData.time`` in ms since the epoch (seconds are scaled); 0 when unusable."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return 0
    return value if value >= _MS_THRESHOLD else value * 1000


def iso_from_ms(ms: int) -> str | None:
    """ISO-8601 UTC with ``Z`` at whole seconds, like every ``market_time`` the hub stores."""
    try:
        stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def tick_from_pricing(message: Any) -> Tick | None:
    """Map one decoded ``PricingData``; ``None`` when it names no symbol or has no price."""
    symbol = _text(getattr(message, "id", None))
    price = _f32(getattr(message, "price", None))
    if symbol is None or price is None:
        return None
    fields: dict[str, Any] = {
        "price": price,
        "change": _f32(getattr(message, "change", None)) or 0.0,
        "change_percent": _f32(getattr(message, "change_percent", None)) or 0.0,
    }
    optional = {
        "day_high": _f32(getattr(message, "day_high", None)),
        "day_low": _f32(getattr(message, "day_low", None)),
        "open": _f32(getattr(message, "open_price", None)),
        "previous_close": _f32(getattr(message, "previous_close", None)),
        "currency": _text(getattr(message, "currency", None)),
        "exchange": _text(getattr(message, "exchange", None)),
        "name": _text(getattr(message, "short_name", None)),
    }
    volume = getattr(message, "day_volume", None)
    if isinstance(volume, int) and not isinstance(volume, bool) and volume > 0:
        optional["volume"] = volume
    fields.update({k: v for k, v in optional.items() if v is not None})
    hours = getattr(message, "market_hours", None)
    if isinstance(hours, int) and hours in MARKET_STATES:
        fields["market_state"] = MARKET_STATES[hours]
    when = time_ms(getattr(message, "time", None))
    if when:
        market_time = iso_from_ms(when)
        if market_time is None:
            when = 0
        else:
            fields["market_time"] = market_time
    return Tick(symbol=symbol.strip().upper(), time_ms=when, fields=fields)
