"""REST: the snapshot, one quote, its history, recent news, health.

Quotes are served from the process's mirror while the hub is ready: it is
exactly the Redis snapshot at ``mirror.seq`` (at most one pub/sub hop behind),
so REST and the WebSocket stream agree, and REST traffic costs Redis nothing.
When the hub is not ready (starting, or resubscribing after a Redis outage)
the routes read Redis directly and answer 503 only if Redis itself fails.
Every quote response carries the seq it reflects in ``X-TickerHub-Seq``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from tickerhub_api.hub import Hub
from tickerhub_api.schemas import (
    ErrorDetail,
    Health,
    HistoryPoint,
    NewsItem,
    Quote,
    Readiness,
)
from tickerhub_core import wire
from tickerhub_core.models import Quote as QuoteDict
from tickerhub_core.symbols import InvalidSymbolError, normalize_symbol, parse_symbol_list

router = APIRouter()

SEQ_HEADER = "X-TickerHub-Seq"
READY_PING_TIMEOUT = 2.0

_NOT_FOUND = {404: {"model": ErrorDetail, "description": "Unknown symbol."}}
_BAD_SYMBOL = {422: {"model": ErrorDetail, "description": "Not a plausible ticker symbol."}}
_UNAVAILABLE = {503: {"model": ErrorDetail, "description": "Redis is unreachable."}}

SymbolPath = Annotated[str, Path(description="Ticker symbol, case-insensitive.", max_length=64)]


class ApiError(Exception):
    """Rendered as ``{"detail": message}`` with ``status_code`` by the app's handler."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def _hub(request: Request) -> Hub:
    return request.app.state.hub


async def _snapshot(hub: Hub) -> tuple[int, dict[str, QuoteDict]]:
    if hub.ready:
        return hub.mirror.seq, hub.mirror.view()
    try:
        return await hub.snapshots.load()
    except RedisError as exc:
        raise ApiError(503, f"quotes are unavailable: Redis is unreachable ({exc})") from None


def _symbol(raw: str) -> str:
    try:
        return normalize_symbol(raw)
    except InvalidSymbolError as exc:
        raise ApiError(422, str(exc)) from None


@router.get(
    "/tickers",
    response_model=dict[str, Quote],
    responses=_UNAVAILABLE,
    summary="Every symbol's latest quote",
)
async def tickers(request: Request, response: Response) -> Any:
    seq, quotes = await _snapshot(_hub(request))
    response.headers[SEQ_HEADER] = str(seq)
    return quotes


@router.get(
    "/tickers/{symbol}",
    response_model=Quote,
    responses={**_NOT_FOUND, **_BAD_SYMBOL, **_UNAVAILABLE},
    summary="One symbol's latest quote",
)
async def ticker(symbol: SymbolPath, request: Request, response: Response) -> Any:
    canonical = _symbol(symbol)
    hub = _hub(request)
    if hub.ready:
        seq, quote = hub.mirror.seq, hub.mirror.get(canonical)
    else:
        seq, quotes = await _snapshot(hub)
        quote = quotes.get(canonical)
    if quote is None:
        raise ApiError(404, f"unknown symbol: {canonical}")
    response.headers[SEQ_HEADER] = str(seq)
    return quote


@router.get(
    "/tickers/{symbol}/history",
    response_model=list[HistoryPoint],
    responses={
        404: {"model": ErrorDetail, "description": "Unknown symbol or no data."},
        422: {"model": ErrorDetail, "description": "Bad symbol, dates or interval."},
        502: {"model": ErrorDetail, "description": "Yahoo failed."},
        503: {"model": ErrorDetail, "description": "Yahoo is unavailable."},
    },
    summary="OHLCV history (from Yahoo Finance, cached briefly)",
)
async def history(
    symbol: SymbolPath,
    request: Request,
    start: Annotated[datetime | None, Query(description="ISO-8601 date or time.")] = None,
    end: Annotated[datetime | None, Query(description="ISO-8601 date or time.")] = None,
    interval: Annotated[str, Query(max_length=8, description="e.g. 1d, 1h, 5m.")] = "1d",
) -> Any:
    # Imported here: history pulls in yfinance and pandas, which nothing else needs.
    from tickerhub_api.history import HistoryError, HistoryService

    canonical = _symbol(symbol)
    state = request.app.state
    if state.history is None:
        state.history = HistoryService()
    try:
        return await state.history.get(canonical, start, end, interval)
    except HistoryError as exc:
        raise ApiError(exc.status_code, str(exc)) from None


@router.get(
    "/news",
    response_model=list[NewsItem],
    responses={**_BAD_SYMBOL, **_UNAVAILABLE},
    summary="Recent news, newest first",
)
async def news(
    request: Request,
    symbols: Annotated[
        str | None, Query(max_length=4096, description="Comma-separated symbols, e.g. AAPL,MSFT.")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, description="How many items at most.")] = None,
) -> Any:
    settings = request.app.state.settings
    wanted: list[str] | None = None
    if symbols is not None:
        try:
            wanted = parse_symbol_list(symbols)
        except InvalidSymbolError as exc:
            raise ApiError(422, str(exc)) from None
    count = min(limit or settings.news_default_limit, settings.news_max_limit)
    try:
        return await _hub(request).news_store.recent(count, wanted)
    except RedisError as exc:
        raise ApiError(503, f"news is unavailable: Redis is unreachable ({exc})") from None


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Any:
    return {"status": "ok"}


async def _producer_beat(hub: Hub) -> int | None:
    """Epoch ms of the producer's last heartbeat; None if expired, absent or unreadable."""
    try:
        async with asyncio.timeout(READY_PING_TIMEOUT):
            return await hub.snapshots.last_beat()
    except (RedisError, OSError, TimeoutError, ValueError):
        return None


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready."}},
    summary="Redis reachable and snapshot loaded",
)
async def readyz(request: Request) -> Any:
    hub = _hub(request)
    try:
        async with asyncio.timeout(READY_PING_TIMEOUT):
            redis_ok = bool(await request.app.state.redis.ping())
    except (RedisError, OSError, TimeoutError):
        redis_ok = False
    beat = await _producer_beat(hub) if redis_ok else None
    ready = redis_ok and hub.ready
    body = {
        "status": "ready" if ready else "not ready",
        "redis": redis_ok,
        "snapshot": hub.ready,
        "seq": hub.mirror.seq,
        "symbols": len(hub.mirror),
        "connections": len(hub.prices.connections) + len(hub.news.connections),
        "producer_age_s": None if beat is None else max(0.0, (wire.now_ms() - beat) / 1000),
    }
    return JSONResponse(body, status_code=200 if ready else 503)
