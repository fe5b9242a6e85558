"""Poller settings, from the environment and ``.env`` (documented in ``.env.example``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tickerhub_core.settings import CommonSettings, ListSetting
from tickerhub_core.symbols import parse_symbol_list

DEFAULT_TICKERS = "AAPL,MSFT,GOOGL,AMZN,NVDA,META,TSLA"


class PollerSettings(CommonSettings):
    tickers: ListSetting = Field(
        default_factory=lambda: parse_symbol_list(DEFAULT_TICKERS),
        description="Comma-separated symbols to poll.",
    )
    poll_freq: float = Field(default=5.0, gt=0, description="Seconds between polls of a ticker.")
    source: Literal["yfinance", "simulated"] = Field(
        default="yfinance", description="Where quotes come from."
    )
    news_interval: float = Field(
        default=300.0, ge=0, description="Seconds between news polls (0 disables news)."
    )
    news_max_items: int = Field(default=500, ge=1, description="Newest news items kept.")
    news_max_symbols: int = Field(
        default=50,
        ge=1,
        description="Most symbols whose news one round asks for: every one of TICKERS, "
        "then symbols on demand in turn (ON_DEMAND) up to this many.",
    )
    news_per_ticker: int = Field(
        default=10, ge=1, le=100, description="News items asked per ticker."
    )
    stale_after: int = Field(
        default=3, ge=1, description="Missed cycles after which a quote is marked stale."
    )
    batch_size: int = Field(
        default=50, ge=1, le=500, description="Most symbols per upstream quote request."
    )
    batch_window: float = Field(
        default=0.05, ge=0, description="Seconds to gather ticker requests into one batch."
    )
    request_timeout: float = Field(default=10.0, gt=0, description="Upstream request timeout.")
    bar_grace: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="Seconds after a minute ends before its 1-minute bar is final (late ticks).",
    )
    heartbeat_file: str | None = Field(
        default=None,
        description="File touched whenever Redis is up to date (for container healthchecks).",
    )
    metrics_port: int = Field(
        default=9100,
        ge=0,
        le=65535,
        description="Port of the poller's Prometheus endpoint (GET /metrics on all "
        "interfaces); 0 turns it off.",
    )
    max_symbols: int = Field(
        default=1000,
        ge=1,
        description="Most symbols polled, TICKERS included (ON_DEMAND); past it a client "
        "asking for a new one gets a capacity error (WebSocket) or 503 (REST).",
    )
    # Yahoo's live price stream beside polling (issue 8; see tickerhub_poller.live).
    stream: Literal["on", "off"] | None = Field(
        default=None,
        description="Yahoo's live price stream beside polling: on or off (unset: on with "
        "SOURCE=yfinance, off with simulated).",
    )
    stream_url: str = Field(
        default="wss://streamer.finance.yahoo.com/?version=2",
        description="WebSocket URL of Yahoo's price streamer (tests point it at a local fake).",
    )
    reconcile_freq: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between polls of a ticker while the stream is connected "
        "(POLL_FREQ again the moment it is not).",
    )
    stream_silence: float = Field(
        default=60.0,
        gt=0,
        description="Seconds without a stream frame, while a subscribed market is open, "
        "before reconnecting.",
    )
    lease_ttl: float = Field(
        default=5.0,
        ge=0.5,
        le=60,
        description="Seconds the leader's Redis lease lasts: with several pollers, one "
        "publishes and a standby takes over within about this long after it dies.",
    )
    sim_seed: int = Field(default=42, description="Seed of the simulated random walk.")
    sim_volatility: float = Field(
        default=0.001, ge=0, description="Simulated per-tick relative price move (stdev)."
    )
    sim_unknown_symbols: ListSetting = Field(
        default_factory=lambda: ["ZZZZ"],
        description="Symbols the simulated source does not know (it knows every other "
        "valid one): how tests and demos see an unknown_symbol answer offline.",
    )

    @field_validator("sim_unknown_symbols")
    @classmethod
    def _parse_unknown(cls, value: list[str]) -> list[str]:
        return parse_symbol_list(value)

    @property
    def stream_enabled(self) -> bool:
        if self.stream is None:
            return self.source == "yfinance"
        return self.stream == "on"

    @field_validator("heartbeat_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None

    @field_validator("stream", mode="before")
    @classmethod
    def _stream_word(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("tickers")
    @classmethod
    def _parse_tickers(cls, value: list[str]) -> list[str]:
        symbols = parse_symbol_list(value)  # raises with the bad symbol named
        if not symbols:
            raise ValueError("must name at least one symbol, e.g. TICKERS=AAPL,MSFT")
        return symbols
