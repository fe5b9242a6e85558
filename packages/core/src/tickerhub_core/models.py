"""The two things the hub moves around: quotes and news items.

They are plain dicts (``TypedDict``) rather than classes: the poller diffs them
field by field, the api merges diffs into them, and both encode them with
orjson many thousands of times a second. The field lists below are the public
contract documented in ``docs/protocol.md``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypedDict


class Quote(TypedDict, total=False):
    """One symbol's latest quote, as stored in the ``prices`` hash."""

    symbol: str  # canonical upper-case symbol; always present
    seq: int  # sequence number of the diff that last changed this quote
    name: str | None
    price: float | None
    change: float | None
    change_percent: float | None
    previous_close: float | None
    open: float | None
    day_high: float | None
    day_low: float | None
    volume: int | None
    currency: str | None
    exchange: str | None
    market_state: str | None  # REGULAR, PRE, POST, CLOSED, ... as Yahoo reports it
    market_time: str | None  # ISO-8601 UTC time of the last trade
    stale: bool  # true once the source has failed for this symbol several cycles in a row


# Fields a source fills in. ``symbol``, ``seq`` and ``stale`` belong to the hub.
QUOTE_DATA_FIELDS: tuple[str, ...] = (
    "name",
    "price",
    "change",
    "change_percent",
    "previous_close",
    "open",
    "day_high",
    "day_low",
    "volume",
    "currency",
    "exchange",
    "market_state",
    "market_time",
)

QUOTE_FIELDS: tuple[str, ...] = ("symbol", "seq", *QUOTE_DATA_FIELDS, "stale")


class NewsItem(TypedDict):
    """One news story, as stored in the news hash and sent to clients."""

    id: str
    title: str
    publisher: str | None
    link: str | None
    published_at: str  # ISO-8601 UTC
    tickers: list[str]  # related symbols (canonical), used for watchlist filtering


def iso_utc(value: datetime | float | int | str | None) -> str | None:
    """Render a timestamp (datetime, epoch seconds or ISO string) as ISO-8601 UTC with ``Z``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, int | float):
        value = datetime.fromtimestamp(value, tz=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def make_quote(symbol: str, **fields: Any) -> Quote:
    """A quote with every data field present (``None`` where unknown)."""
    quote: dict[str, Any] = {"symbol": symbol}
    for name in QUOTE_DATA_FIELDS:
        quote[name] = fields.pop(name, None)
    if fields:
        raise TypeError(f"unknown quote fields: {sorted(fields)}")
    # built field by field as a plain dict; the loop above checked every key
    return quote  # type: ignore[return-value]
