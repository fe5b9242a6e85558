"""The api's settings: where to listen and the limits that keep one client from hurting others."""

from __future__ import annotations

from pydantic import Field

from tickerhub_core.settings import CommonSettings


class ApiSettings(CommonSettings):
    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on.")

    ws_max_symbols: int = Field(
        default=500, ge=1, description="Most symbols one WebSocket connection may watch."
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
    news_default_limit: int = Field(
        default=20, ge=1, description="News items returned when no limit is given."
    )
    news_max_limit: int = Field(default=200, ge=1, description="Largest accepted news limit.")
