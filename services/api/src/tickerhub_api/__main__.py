"""``api`` console script: serve until SIGINT/SIGTERM, then exit 0."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from tickerhub_api.access import install_log_redaction, redact
from tickerhub_api.app import create_app
from tickerhub_api.settings import ApiSettings
from tickerhub_api.stream.fastpath import FastWebSocketProtocol
from tickerhub_api.stream.hub import Hub
from tickerhub_api.stream.protocol import CloseCode
from tickerhub_core.logs import configure_logging
from tickerhub_core.settings import load_settings

# Seconds to let open requests finish on shutdown before closing the rest.
GRACEFUL_SHUTDOWN_SECONDS = 5
# Seconds to wait for WebSocket clients to be sent their 1001 close.
CLOSE_WEBSOCKETS_SECONDS = 2.0

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn, but WebSocket clients are told 1001 "going away" on shutdown.

    uvicorn's own shutdown closes open WebSockets with 1012 ("service restart");
    we stop accepting, close ours with 1001 through the hub (each connection's
    route sends the close frame: the fast path's reader is interrupted, the ASGI
    path's sender stops), then let uvicorn finish.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        hub: Hub | None = getattr(self._app.state, "hub", None)
        if hub is not None:
            closed = await hub.close_all(CloseCode.GOING_AWAY, grace=CLOSE_WEBSOCKETS_SECONDS)
            log.info("closed %d WebSockets with 1001", closed)
        await super().shutdown(sockets)


def server_config(app: FastAPI, settings: ApiSettings, **overrides: Any) -> uvicorn.Config:
    """uvicorn's configuration for the api (tests pass ``port=0``, ``root_path``...)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        # uvloop and httptools when installed (they are not everywhere), else asyncio and h11.
        "loop": "auto",
        "http": "auto",
        # uvicorn's websockets-sansio protocol plus the direct frame path (stream/fastpath.py).
        "ws": FastWebSocketProtocol if settings.ws_fast_path else "websockets-sansio",
        # Compression costs ~50 KiB per connection and CPU per frame; quotes are small.
        "ws_per_message_deflate": False,
        "ws_max_size": settings.ws_max_frame_bytes,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_timeout,
        "log_level": settings.log_level.lower(),
        "log_config": None,  # keep configure_logging's format
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    return uvicorn.Config(app, **{**options, **overrides})


def main() -> None:
    settings = load_settings(ApiSettings, "api")
    configure_logging(settings.log_level, settings.log_format, redact=redact)
    install_log_redaction()  # ?api_key= values never reach the logs
    app = create_app(settings)
    config = server_config(app, settings)
    log.info(
        "WebSocket frames: %s",
        "direct writes to uvicorn's transports (WS_FAST_PATH)"
        if settings.ws_fast_path
        else "plain ASGI sends (WS_FAST_PATH=false)",
    )
    # uvicorn re-raises the signal it caught once it has shut down, to die "by"
    # it; with these no-op handlers in place that re-raise is harmless and a
    # requested stop exits 0, as container runtimes and supervisors expect.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    _Server(config, app).run()
    sys.exit(0)


if __name__ == "__main__":
    main()
