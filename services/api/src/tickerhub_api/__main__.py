"""``api`` console script: serve until SIGINT/SIGTERM, then exit 0."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from tickerhub_api.access import install_log_redaction, redact
from tickerhub_api.app import create_app
from tickerhub_api.settings import ApiSettings
from tickerhub_api.stream.hub import Hub
from tickerhub_api.stream.protocol import CloseCode
from tickerhub_api.uvicorn_protocols import Guards, install_accept_error_warning, protocol_classes
from tickerhub_core.gcpolicy import settle_heap
from tickerhub_core.logs import configure_logging
from tickerhub_core.settings import load_settings

# Seconds to let open requests finish on shutdown before closing the rest.
GRACEFUL_SHUTDOWN_SECONDS = 5
# Seconds to wait for WebSocket clients to be sent their 1001 close.
CLOSE_WEBSOCKETS_SECONDS = 2.0

# File descriptors kept free beyond the WebSockets: REST, Redis, pending handshakes.
FD_HEADROOM = 1000

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn, but WebSocket clients are told 1001 "going away" on shutdown.

    uvicorn's own shutdown closes open WebSockets with 1012 ("service restart");
    we stop accepting, close ours with 1001 through the hub (each connection's
    route sends the close frame: the fast path's reader is interrupted, the ASGI
    path's sender stops), then let uvicorn finish.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, guards: Guards) -> None:
        super().__init__(config)
        self._app = app
        self._guards = guards

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        install_accept_error_warning(asyncio.get_running_loop(), self._guards)
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        hub: Hub | None = getattr(self._app.state, "hub", None)
        if hub is not None:
            closed = await hub.close_all(CloseCode.GOING_AWAY, grace=CLOSE_WEBSOCKETS_SECONDS)
            log.info("closed %d WebSockets with 1001", closed)
        await super().shutdown(sockets)


def make_guards(settings: ApiSettings) -> Guards:
    return Guards(
        header_timeout=settings.http_header_timeout, send_buffer=settings.socket_send_buffer
    )


def server_config(
    app: FastAPI, settings: ApiSettings, guards: Guards | None = None, **overrides: Any
) -> uvicorn.Config:
    """uvicorn's configuration for the api (tests pass ``port=0``, ``root_path``...)."""
    # uvloop and httptools when installed (they are not everywhere), else asyncio and h11;
    # both protocols with the deadlines of uvicorn_protocols.py, the WebSocket one with
    # the direct frame path (stream/fastpath.py) unless WS_FAST_PATH=false.
    http, ws = protocol_classes(guards or make_guards(settings), settings.ws_fast_path)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "auto",
        "http": http,
        "ws": ws,
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


def _raise_fd_limit(settings: ApiSettings) -> None:
    """Every socket is a file descriptor: raise the soft limit to the hard one, and warn
    when even that cannot hold WS_MAX_CONNECTIONS plus some for REST and pending ones."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    needed = settings.ws_max_connections + settings.ws_max_pending_auth + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "the file-descriptor limit (%d) is below WS_MAX_CONNECTIONS + "
            "WS_MAX_PENDING_AUTH + %d (%d): past it new connections fail "
            "(raise ulimit -n or lower WS_MAX_CONNECTIONS)",
            soft,
            FD_HEADROOM,
            needed,
        )
    else:
        log.info("file-descriptor limit: %d", soft)


def main() -> None:
    settings = load_settings(ApiSettings, "api")
    configure_logging(settings.log_level, settings.log_format, redact=redact)
    install_log_redaction()  # ?api_key= values never reach the logs
    app = create_app(settings)
    server_guards = make_guards(settings)
    config = server_config(app, settings, server_guards)
    _raise_fd_limit(settings)
    # Imports and the app built: out of the collector's sight from now on, and rarer
    # collections while connections come and go (gcpolicy.py says why, with figures).
    settle_heap()
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
    _Server(config, app, server_guards).run()
    sys.exit(0)


if __name__ == "__main__":
    main()
