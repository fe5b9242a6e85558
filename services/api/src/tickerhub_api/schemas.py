"""Response models: they document the REST API in OpenAPI (/docs).

The routes return plain dicts already shaped like these (they come from Redis
or the mirror as JSON); the models describe them, they are not a second store.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Quote(BaseModel):
    model_config = ConfigDict(extra="allow")

    symbol: str = Field(description="Canonical upper-case symbol.", examples=["AAPL"])
    seq: int | None = Field(default=None, description="Seq of the diff that last changed it.")
    name: str | None = None
    price: float | None = None
    change: float | None = None
    change_percent: float | None = Field(default=None, description="1.5 means +1.5 %.")
    previous_close: float | None = None
    open: float | None = None
    day_high: float | None = None
    day_low: float | None = None
    volume: int | None = None
    currency: str | None = None
    exchange: str | None = None
    market_state: str | None = Field(default=None, examples=["REGULAR"])
    market_time: str | None = Field(default=None, description="ISO-8601 UTC.")
    stale: bool = Field(default=False, description="The source has been failing for it.")


class Bar(BaseModel):
    """A 1-minute OHLCV bar (docs/protocol.md, *Bars*)."""

    symbol: str
    t: str = Field(description="Start of the minute, ISO-8601 UTC; the bar covers [t, t + 60 s).")
    o: float
    h: float
    l: float  # noqa: E741 (the protocol's name)
    c: float
    v: int = Field(description="Rise of the day volume within the minute (never negative).")
    n: int = Field(description="Quotes sampled in the minute.")
    final: bool = Field(description="The minute (plus a grace for late ticks) is over.")
    revision: int = Field(description="Rises with every publication of this bar.")


class NewsItem(BaseModel):
    id: str
    title: str
    publisher: str | None = None
    link: str | None = None
    published_at: str = Field(description="ISO-8601 UTC.")
    tickers: list[str] = Field(default_factory=list, description="Related symbols.")


class HistoryPoint(BaseModel):
    date: str = Field(description="ISO-8601 UTC.")
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    volume: int | None = None


class ErrorDetail(BaseModel):
    detail: str = Field(description="What went wrong, for a person.")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready", "not ready"])
    redis: bool = Field(description="Redis answered a PING.")
    snapshot: bool = Field(description="The process holds the snapshot and is subscribed.")
    seq: int = Field(description="Seq of the snapshot this process serves.")
    symbols: int
    connections: int = Field(description="Open WebSocket connections in this process.")
    producer_age_s: float | None = Field(
        default=None,
        description="Seconds since the producer (poller) last said it is alive; null when "
        "it has been silent for 30 s or more (stopped or dead: quotes may be stale). "
        "Informational: the api serves what Redis holds either way.",
    )
    quotes_stale: bool = Field(
        default=False,
        description="No producer is alive (its heartbeat expired and no diff came since): "
        "every quote is served and pushed with stale: true until one is back. The api "
        "stays ready: restarting it would not help.",
    )
    note: str | None = Field(
        default=None,
        description="Set while no producer has ever written a snapshot (symbols: 0): the "
        "api is ready (restarting it would not help) and streams once the poller writes; "
        "or while quotes_stale is true, saying so.",
    )


SourceState = Literal["unknown", "ok", "degraded", "down"]


class SourceErrorInfo(BaseModel):
    type: str = Field(description="The error's class, e.g. SourceUnavailableError.")
    message: str = Field(description="A short message (no URLs' query strings, no secrets).")
    at: str | None = Field(default=None, description="ISO-8601 UTC.")


class SourceHealth(BaseModel):
    """One source of the poller (``poll``: requests every POLL_FREQ; ``stream``: push)."""

    model_config = ConfigDict(extra="allow")

    state: SourceState = Field(
        description="unknown: nothing reported yet; ok: the last outcome succeeded; "
        "degraded: failing, but fewer than 3 failures in a row and a success within 60 s; "
        "down: 3+ failures in a row, or no success for 60 s (or ever)."
    )
    last_success: str | None = Field(default=None, description="ISO-8601 UTC.")
    consecutive_failures: int = 0
    last_error: SourceErrorInfo | None = None
    requests: int = Field(default=0, description="Requests (poll) or connect attempts (stream).")
    failing_symbols: int = Field(default=0, description="Symbols whose last batch failed.")
    connected: bool | None = Field(default=None, description="Stream only: connected now.")
    ticks: int | None = Field(default=None, description="Stream only: ticks received.")


class PolledSymbols(BaseModel):
    static: int = Field(description="Symbols from TICKERS.")
    on_demand: int = Field(default=0, description="Symbols polled because clients asked.")


class ProducerStatus(BaseModel):
    """The poller's source status, as it last wrote it to Redis (``source:status``)."""

    model_config = ConfigDict(extra="allow")

    state: SourceState = Field(
        description="ok if every source is ok, down if every one is down, else degraded."
    )
    source: str = Field(examples=["yfinance"])
    host: str | None = None
    pid: int | None = None
    started_at: str | None = Field(default=None, description="ISO-8601 UTC.")
    written_at: str | None = Field(default=None, description="ISO-8601 UTC.")
    age_s: float | None = Field(default=None, description="Seconds since it was written.")
    symbols: PolledSymbols
    sources: dict[str, SourceHealth]


class ApiState(BaseModel):
    redis: bool = Field(description="Redis answered a PING.")
    snapshot: bool = Field(description="The process holds the snapshot and is subscribed.")
    seq: int
    epoch: str
    symbols: int
    connections: int = Field(description="Open WebSocket connections in this process.")
    producer_age_s: float | None = Field(
        default=None, description="Seconds since the producer's Redis heartbeat (as /readyz)."
    )
    quotes_stale: bool = Field(
        default=False,
        description="No producer is alive (its heartbeat expired): every quote is served "
        "with stale: true (as /readyz).",
    )


class Status(BaseModel):
    state: Literal["unknown", "ok", "degraded", "down", "no_producer"] = Field(
        description="The data source's state as the poller reports it; no_producer when "
        "no poller has written its status for 10 s (stopped, dead, or Redis unreachable)."
    )
    producer: ProducerStatus | None = Field(
        description="The poller's source status; null when absent or expired."
    )
    note: str | None = Field(default=None, description="Why producer is null.")
    api: ApiState
