"""The application factory. Nothing connects at import time: the lifespan does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from tickerhub_api.access import ApiKeyMiddleware, KeyCheck, add_key_security, cors_options
from tickerhub_api.interest import on_demand
from tickerhub_api.metrics import install_metrics
from tickerhub_api.probes import READY_PING_TIMEOUT, ReadinessProbe, RedisFailures
from tickerhub_api.rest_cap import RestConcurrencyCap
from tickerhub_api.routes import board, rest, status, ws
from tickerhub_api.settings import ApiSettings
from tickerhub_api.stream.hub import Hub
from tickerhub_api.stream.policy import ConnectionPolicy
from tickerhub_api.stream.reads import Reads
from tickerhub_core.primary_watch import follow_primary
from tickerhub_core.redis_client import redis_client


class TickerHubApp(FastAPI):
    """The FastAPI app, with its two WebSocket streams dispatched ahead of the stack.

    For a WebSocket that stays open for hours, FastAPI's per-request machinery
    (its middleware and routing frames, three ``AsyncExitStack``s with a deque
    each, the exception-handling wrappers) is memory held per connection and
    nothing else: ~8 KiB each, a third of a connection's cost at 10,000 clients
    (measured with tracemalloc). The same endpoint functions, declared on the
    FastAPI router (so the test client and any mounting still reach them), are
    called directly for those two paths. No middleware of this app acts on
    WebSockets (API keys and CORS are HTTP-only), so the behaviour is the same.

    The path is matched as Starlette's router matches it: relative to the
    ``root_path`` (``uvicorn --root-path``, or ``FastAPI(root_path=...)``, which
    FastAPI copies into the scope), so the bypass also serves an api behind a
    proxy prefix (tests/test_uvicorn.py).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if self.root_path:
                scope["root_path"] = self.root_path  # as FastAPI.__call__ does
            endpoint = ws.STREAMS.get(_route_path(scope))
            if endpoint is not None:
                scope["app"] = self
                await endpoint(WebSocket(scope, receive, send))
                return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path below ``root_path``, matched the way Starlette's router matches it
    (its ``get_route_path`` is private, hence this copy of the rule)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if (
        root_path
        and path.startswith(root_path)
        and path[len(root_path) : len(root_path) + 1] == "/"
    ):
        return path[len(root_path) :]
    return path


def create_app(
    settings: ApiSettings | None = None,
    *,
    redis: Redis | None = None,
    history: Any | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the app. ``redis`` and ``history`` are injected by tests; when given, the
    caller owns them (the app does not close them). ``registry``: where the metrics
    collectors go (a new one per app by default; never the process-global one)."""
    settings = settings or ApiSettings()
    policy = ConnectionPolicy.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No read timeout: the hub's pub/sub reader waits with its own timeouts.
        client = redis or redis_client(settings, socket_timeout=None)
        # /readyz's own pool, so a flood on the shared one cannot make it say "Redis down".
        probe_client = redis or redis_client(
            settings, socket_timeout=READY_PING_TIMEOUT, max_connections=2
        )
        if history is None:
            # The module is light; HistoryService imports yfinance and pandas (tens
            # of MiB) only on its first fetch, so a process that never serves
            # history never loads them.
            from tickerhub_api.history import HistoryService
            from tickerhub_api.history_gate import OutboundGate
            from tickerhub_core.store import YahooRateLimit

            gate = OutboundGate(
                settings.history_max_concurrent,
                settings.history_max_per_second,
                shared=YahooRateLimit(client, settings.keys),
            )
            history_service: Any = HistoryService(
                negative_ttl=settings.history_negative_ttl, gate=gate
            )
        else:
            history_service = history
        hub = Hub(client, settings.keys, policy, settings.news_default_limit)
        hub.subscription.timed = settings.metrics
        app.state.settings = settings
        app.state.redis = client
        app.state.probe = ReadinessProbe(probe_client, settings.keys.producer_heartbeat)
        app.state.status_reader = status.StatusReader(client, settings.keys.source_status)
        app.state.redis_failures = RedisFailures()
        app.state.history = history_service
        app.state.hub = hub
        app.state.reads = Reads(hub)
        app.state.interest = on_demand(client, settings, hub)
        await hub.start()
        if app.state.interest is not None:
            app.state.interest.start()
        # With REDIS_SENTINELS: notice a failover even if no connection breaks.
        following = asyncio.create_task(follow_primary(client), name="follow-primary")
        try:
            yield
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
            if app.state.interest is not None:
                await app.state.interest.stop()
            await hub.stop()
            if redis is None:
                await client.aclose()
                await probe_client.aclose()

    app = TickerHubApp(
        title="TickerHub api",
        summary="Real-time quotes and news: REST snapshot and WebSocket streams.",
        version="0.1.0",
        lifespan=lifespan,
    )
    # Starlette types handlers for Exception; ours takes the narrower ApiError it is registered for
    app.add_exception_handler(rest.ApiError, _api_error)  # type: ignore[arg-type]
    app.include_router(rest.router)
    app.include_router(status.router)
    app.include_router(ws.router)
    app.include_router(board.router)
    app.state.ws_admission = ws.Admission.from_settings(settings)
    app.state.ws_policy = policy
    keys = KeyCheck(settings.api_key_list)
    if keys.enabled:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
        _declare_keys_in_openapi(app)
    if settings.rest_max_concurrent > 0:
        # Outside the key check (a keyless flood is capped too), inside CORS (its 503
        # carries the CORS headers a browser needs to show it).
        app.add_middleware(RestConcurrencyCap, limit=settings.rest_max_concurrent)
    # Added last, so outermost: preflights are answered without a key, and a 401
    # carries the CORS headers the browser needs to show it to the page.
    cors = cors_options(settings.cors_origin_list, keys.enabled)
    if cors is not None:
        app.add_middleware(CORSMiddleware, **cors)
    if settings.metrics:
        # Outermost: requests answered by the key or CORS middleware count too.
        install_metrics(
            app, registry, routes=[*rest.router.routes, *status.router.routes, *ws.router.routes]
        )
    return app


def _declare_keys_in_openapi(app: FastAPI) -> None:
    """FastAPI builds the document once and caches it in ``app.openapi_schema``."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_key_security(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _api_error(request: Request, exc: rest.ApiError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
