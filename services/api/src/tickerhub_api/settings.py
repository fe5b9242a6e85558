"""The api's settings: where to listen and the limits that keep one client from hurting others."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from tickerhub_api.access import check_key_syntax, normalize_origin
from tickerhub_api.keys_file import read_keys_file
from tickerhub_core.settings import CommonSettings, ListSetting, split_list_setting

# ListSetting's parsing ("a, b,,c" -> a, b, c), each key kept secret (hidden from repr/logs).
SecretListSetting = Annotated[list[SecretStr], NoDecode, BeforeValidator(split_list_setting)]


class ApiSettings(CommonSettings):
    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on.")

    ws_fast_path: bool = Field(
        default=True,
        description="Write WebSocket frames straight to uvicorn's transports (see "
        "stream/fastpath.py); false sends through plain ASGI, for comparison or troubleshooting.",
    )
    ws_max_symbols: int = Field(
        default=500, ge=1, description="Most symbols one WebSocket connection may watch."
    )
    ws_max_unknown_symbols: int = Field(
        default=50,
        ge=0,
        description="Most symbols one WebSocket may watch that no producer has published "
        "yet; past it the change is refused with a too_many_unknown error.",
    )
    ws_max_pending_symbols: int = Field(
        default=10_000,
        ge=0,
        description="Most distinct never-published symbols watched per stream in one api "
        "process; past it new ones are refused with too_many_unknown.",
    )
    ws_max_frame_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest client message; a bigger one closes the connection with 1009.",
    )
    ws_send_queue_bound: int = Field(
        default=64,
        ge=1,
        description=(
            "Most replies and snapshots queued for one connection that is not reading; "
            "past it the connection is closed with 4008. Price diffs never count: they "
            "are merged per symbol."
        ),
    )
    ws_send_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one send may stay blocked on a client that does not read "
        "before the connection is closed with 4008.",
    )
    ws_ping_interval: float = Field(
        default=20.0, gt=0, description="Seconds between the server's WebSocket pings."
    )
    ws_ping_timeout: float = Field(
        default=20.0, gt=0, description="Seconds to wait for a pong before dropping the peer."
    )
    on_demand_wait: float = Field(
        default=3.0,
        ge=0,
        le=30,
        description="Seconds GET /tickers/{symbol} waits for the first quote of a symbol "
        "asked for on demand before answering 504.",
    )
    # -- limits (docs/operations.md) ------------------------------------------
    http_header_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a connection has to send a complete request head (each "
        "request's head, counted from its first byte; the first from the connection), and "
        "a WebSocket to complete its handshake; past it the socket is closed (408 if it "
        "sent anything).",
    )
    socket_send_buffer: int = Field(
        default=64 * 1024,
        ge=0,
        description="SO_SNDBUF of every accepted socket, bounding the kernel memory a "
        "client that does not read can hold (Linux doubles the value); 0: the kernel's "
        "default, auto-tuned up to net.ipv4.tcp_wmem's maximum (4 MiB).",
    )
    ws_max_connections: int = Field(
        default=20000,
        ge=1,
        description="Most open WebSockets per api process (prices and news together); "
        "past it a new one is accepted and closed at once with 1013 (try again later).",
    )
    ws_max_pending_auth: int = Field(
        default=200,
        ge=1,
        description="Most WebSockets per api process waiting to send their first "
        '{"auth": "<key>"} message (API keys on, no key in the URL or headers); they do '
        "not count against WS_MAX_CONNECTIONS. Past it a new one is closed with 1013.",
    )
    ws_max_messages_per_second: float = Field(
        default=10.0,
        ge=0,
        description="Client messages per second one WebSocket may send on average "
        "(0: no limit); excess messages get a rate_limited error and are not processed.",
    )
    ws_message_burst: int = Field(
        default=20, ge=1, description="Client messages one WebSocket may send at once."
    )
    ws_rate_limit_strikes: int = Field(
        default=50,
        ge=1,
        description="Rate-limited messages within 10 seconds after which the connection "
        "is closed with 1008.",
    )
    ws_idle_timeout: float = Field(
        default=0.0,
        ge=0,
        description="Seconds without any client message (text or binary frame; WebSocket "
        "pongs do not count) after which the connection is closed with 4000; 0 disables.",
    )
    # -- access ----------------------------------------------------------------
    # Declared before api_keys: its validator reads the file this one has checked.
    api_keys_file: str | None = Field(
        default=None,
        description="File holding the API keys (Docker/Kubernetes secrets): one per line "
        "(or comma-separated), blank lines and # comment lines ignored. It must hold at "
        "least one key; cannot be combined with API_KEYS.",
    )
    api_keys: SecretListSetting = Field(
        default_factory=list,
        # Run on the default too: with API_KEYS_FILE the keys come from the file.
        validate_default=True,
        description="Comma-separated API keys; empty: the api is open. When set, REST "
        "and WebSockets need one of them.",
    )
    ws_auth_timeout: float = Field(
        default=5.0,
        gt=0,
        description='Seconds a WebSocket has to send {"auth": "<key>"} when API keys are on '
        "and it gave no key in the URL or headers.",
    )
    allowed_origins: ListSetting = Field(
        default_factory=list,
        description="Comma-separated browser origins allowed to open WebSockets "
        "(e.g. https://app.example.com); empty or *: every origin.",
    )
    cors_origins: ListSetting = Field(
        default_factory=list,
        description="Comma-separated origins allowed to call REST from a browser; empty: * "
        "while the api is open, none (same origin only) once API keys are on.",
    )

    metrics: bool = Field(
        default=True,
        description="Serve Prometheus metrics on GET /metrics (open even with API keys: "
        "counts only, no symbols or keys); false removes the route and the timing it needs.",
    )

    news_default_limit: int = Field(
        default=20, ge=1, description="News items returned when no limit is given."
    )
    news_max_limit: int = Field(default=200, ge=1, description="Largest accepted news limit.")

    rest_max_concurrent: int = Field(
        default=0,
        ge=0,
        description="Most REST requests served at once per api process (probes exempt); past "
        "it 503 with Retry-After at once. 0: no cap.",
    )

    # -- history (docs/operations.md: what keeps it from flooding Yahoo) --------
    history_symbols: Literal["held", "any"] = Field(
        default="held",
        description="Symbols /tickers/{symbol}/history asks Yahoo about: held (only those "
        "the hub holds a quote for; others get 404 without asking Yahoo) or any.",
    )
    history_max_concurrent: int = Field(
        default=4, ge=1, description="Most history fetches to Yahoo at once, per api process."
    )
    history_max_per_second: float = Field(
        default=2.0,
        gt=0,
        description="History fetches to Yahoo per second on average, per api process; past "
        "this or HISTORY_MAX_CONCURRENT: 503 with Retry-After at once.",
    )
    history_negative_ttl: float = Field(
        default=300.0,
        ge=0,
        description="Seconds a 404 (unknown symbol, no data) or 422 from Yahoo is cached.",
    )

    @field_validator("api_keys_file")
    @classmethod
    def _check_keys_file(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None  # API_KEYS_FILE= (empty, as in a copied .env): not set
        if value is not None:
            read_keys_file(value)  # missing, unreadable, empty or a bad key: one clear line
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: list[SecretStr], info: ValidationInfo) -> list[SecretStr]:
        for key in value:
            check_key_syntax(key.get_secret_value())
        path = info.data.get("api_keys_file")
        if path is not None:
            if value:
                # Two sources would leave it unclear which keys are in force (a stale
                # API_KEYS in .env beside a rotated Secret): one of them only.
                raise ValueError("cannot be combined with API_KEYS_FILE: set one of them")
            return [SecretStr(key) for key in read_keys_file(path)]
        return value

    @field_validator("allowed_origins", "cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*":
                normalize_origin(origin)
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_cors_with_keys(cls, value: list[str], info: ValidationInfo) -> list[str]:
        keys = info.data.get("api_keys")  # validated before: declared before
        if keys and "*" in value:
            raise ValueError("* cannot be combined with API_KEYS: list the origins allowed")
        return value

    @property
    def api_key_list(self) -> tuple[str, ...]:
        return tuple(key.get_secret_value() for key in self.api_keys)

    @property
    def allowed_origin_list(self) -> tuple[str, ...]:
        return tuple(self.allowed_origins)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(self.cors_origins)
