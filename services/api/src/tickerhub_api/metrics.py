"""``GET /metrics``: the api's Prometheus metrics, read from the stream machinery at scrape time.

The fan-out counts in plain ints on the objects it already touches (streams,
outboxes, the flusher, the subscription; see their attributes); this module's
collector turns them into metric families only when scraped, so a frame costs
an increment, not a ``prometheus_client`` call. HTTP requests are counted by a
small ASGI middleware, by route template (``/tickers/{symbol}``), never the raw
path, so the label set stays bounded. No label names a symbol or a connection.

``METRICS=false`` removes the route, the middleware and the fan-out timing
(the bench compares the two: ``tickerhub-bench --scenarios A --targets ours,nometrics``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tickerhub_core.metrics import SLOW_BUCKETS, Buckets, build_info, histogram_family, render

UNMATCHED = "<unmatched>"  # requests no route matched (404s, 401s before routing...)


class HttpCounts:
    """Requests by (method, route template, status) and their durations by route."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.durations: dict[tuple[str, ...], Buckets] = {}


class HttpMetricsMiddleware:
    """Counts every HTTP request once its response has started (WebSockets pass)."""

    def __init__(self, app: ASGIApp, counts: HttpCounts, routes: Any) -> None:
        self.app = app
        self.counts = counts
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response starts is a 500 to the client

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = self._route(scope)
            key = (scope["method"], route, str(status))
            requests = self.counts.requests
            requests[key] = requests.get(key, 0) + 1
            buckets = self.counts.durations.get((route,))
            if buckets is None:
                buckets = self.counts.durations[(route,)] = Buckets(SLOW_BUCKETS)
            buckets.observe(time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
        # Answered before routing (a 401 from the key middleware): match it ourselves,
        # against plain routes only (an included router has no single template).
        for candidate in self.routes:
            path = getattr(candidate, "path", None)
            if isinstance(path, str) and candidate.matches(scope)[0] is Match.FULL:
                return path
        return UNMATCHED


class ApiCollector(Collector):
    """Reads ``app.state.hub`` (created by the lifespan) and the HTTP counts when scraped."""

    def __init__(self, app: FastAPI, http: HttpCounts) -> None:
        self._app = app
        self._http = http

    def collect(self) -> Iterable[Metric]:
        yield from _http_families(self._http)
        hub = getattr(self._app.state, "hub", None)
        admission = getattr(self._app.state, "ws_admission", None)
        if admission is not None:
            refused = CounterMetricFamily(
                "tickerhub_ws_refused",
                "WebSockets refused before streaming, by reason (origin, capacity: 1013, "
                "auth: 1008).",
                labels=["reason"],
            )
            for reason, count in sorted(admission.refused.items()):
                refused.add_metric([reason], count)
            yield refused
        if hub is None:
            return  # not started (or stopped): only what does not need the hub
        yield from _stream_families(hub)
        yield from _subscription_families(hub)


def _stream_families(hub: Any) -> Iterable[Metric]:
    streams = {"prices": hub.prices, "news": hub.news}
    open_ = GaugeMetricFamily(
        "tickerhub_ws_connections", "Open WebSockets, by endpoint.", labels=["endpoint"]
    )
    connects = CounterMetricFamily(
        "tickerhub_ws_connects", "WebSockets admitted, by endpoint.", labels=["endpoint"]
    )
    disconnects = CounterMetricFamily(
        "tickerhub_ws_disconnects",
        "WebSockets gone, by endpoint and close code (ours when we closed, else the "
        "client's; 1006: no close frame).",
        labels=["endpoint", "code"],
    )
    received = CounterMetricFamily(
        "tickerhub_ws_client_messages",
        "Client messages received (after admission), by endpoint.",
        labels=["endpoint"],
    )
    errors = CounterMetricFamily(
        "tickerhub_ws_protocol_errors",
        "error messages sent to clients, by endpoint and code.",
        labels=["endpoint", "code"],
    )
    conflated = CounterMetricFamily(
        "tickerhub_ws_updates_conflated",
        "Diffs merged into one a client had not taken yet (slow readers get fewer, fuller diffs).",
    )
    merged = 0
    for name, stream in streams.items():
        open_.add_metric([name], len(stream.connections))
        connects.add_metric([name], stream.connects)
        for code, count in sorted(stream.disconnects.items()):
            disconnects.add_metric([name, str(code)], count)
        received.add_metric([name], stream.received)
        for code, count in sorted(stream.errors.items()):
            errors.add_metric([name, code], count)
        merged += stream.conflated_gone + sum(c.outbox.conflated for c in list(stream.connections))
    conflated.add_metric([], merged)
    yield from (open_, connects, disconnects, received, errors, conflated)

    flusher, asgi = hub.flusher, hub.asgi_sent
    yield CounterMetricFamily(
        "tickerhub_ws_messages_sent",
        "WebSocket messages sent to clients (all endpoints).",
        value=flusher.frames_sent + asgi.frames_sent,
    )
    yield CounterMetricFamily(
        "tickerhub_ws_sent_bytes",
        "Bytes of WebSocket messages sent (framing included on the fast path).",
        value=flusher.bytes_sent + asgi.bytes_sent,
    )


def _subscription_families(hub: Any) -> Iterable[Metric]:
    sub = hub.subscription
    yield histogram_family(
        "tickerhub_fanout_duration_seconds",
        "Time to fan one diff out to every watching connection's outbox.",
        sub.fanout_seconds,
    )
    yield histogram_family(
        "tickerhub_pubsub_lag_seconds",
        "Wall-clock time from the producer's publish (the diff's ts) to its fan-out here.",
        sub.lag_seconds,
    )
    yield GaugeMetricFamily(
        "tickerhub_seq", "The seq of the snapshot this process holds.", value=hub.mirror.seq
    )
    yield CounterMetricFamily(
        "tickerhub_seq_gaps",
        "Diffs whose seq was not the next one (each causes a reload).",
        value=sub.gaps,
    )
    reloads = CounterMetricFamily(
        "tickerhub_snapshot_reloads",
        "Snapshot loads from Redis, by reason (subscribe, gap, reset, reconnect, behind).",
        labels=["reason"],
    )
    for reason, count in sorted(sub.reload_reasons.items()):
        reloads.add_metric([reason], count)
    yield reloads
    yield GaugeMetricFamily(
        "tickerhub_redis_up",
        "1 while the Redis subscription is up and the snapshot loaded.",
        value=1 if hub.ready else 0,
    )
    yield GaugeMetricFamily(
        "tickerhub_quotes_stale",
        "1 while no producer is alive and every quote is served stale (stream/liveness.py).",
        value=1 if hub.liveness.quotes_stale else 0,
    )


def _http_families(http: HttpCounts) -> Iterable[Metric]:
    requests = CounterMetricFamily(
        "tickerhub_http_requests",
        "HTTP requests, by method, route template and status.",
        labels=["method", "route", "status"],
    )
    for (method, route, status), count in sorted(http.requests.items()):
        requests.add_metric([method, route, status], count)
    yield requests
    yield histogram_family(
        "tickerhub_http_request_duration_seconds",
        "HTTP request duration, by route template.",
        dict(http.durations),
        labels=["route"],
    )


def install_metrics(
    app: FastAPI, registry: CollectorRegistry | None = None, routes: Sequence[BaseRoute] = ()
) -> CollectorRegistry:
    """Add ``GET /metrics``, the HTTP middleware and the collector to ``app``.

    ``registry``: where the collectors go (a new one by default, never the global one).
    ``routes``: the routes of the routers ``app`` includes, to name requests that are
    answered before routing (FastAPI keeps included routers behind one opaque entry).
    """
    registry = registry or CollectorRegistry(auto_describe=False)
    http = HttpCounts()
    registry.register(ApiCollector(app, http))
    build_info(registry, "api", "tickerhub-api")
    app.state.metrics_registry = registry

    async def metrics(request: Request) -> Response:
        body, content_type = render(request.app.state.metrics_registry)
        return Response(body, media_type=content_type)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(HttpMetricsMiddleware, counts=http, routes=[*routes, *app.router.routes])
    return registry
