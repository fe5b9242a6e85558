"""REST: the snapshot, one quote, its history, recent news, health.

The routes get what they read through FastAPI dependencies (below): the
stream machinery's narrow read view (:class:`~tickerhub_api.stream.reads.Reads`:
quotes from the process's mirror while it is ready, else from Redis), the
history service and the settings, all created with the app (``app.py``). They
answer 503 only if Redis itself fails. Every quote response carries the seq it
reflects in ``X-TickerHub-Seq``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tickerhub_api.schemas import (
    Bar,
    ErrorDetail,
    Health,
    HistoryPoint,
    NewsItem,
    Quote,
    Readiness,
)
from tickerhub_api.settings import ApiSettings
from tickerhub_api.stream.reads import Reads
from tickerhub_core import wire
from tickerhub_core.symbols import InvalidSymbolError, normalize_symbol, parse_symbol_list

router = APIRouter()

SEQ_HEADER = "X-TickerHub-Seq"
READY_PING_TIMEOUT = 2.0

# FastAPI's ``responses=`` type: keys may be status codes or "default".
_Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: _Responses = {404: {"model": ErrorDetail, "description": "Unknown symbol."}}
_BAD_SYMBOL: _Responses = {
    422: {"model": ErrorDetail, "description": "Not a plausible ticker symbol."}
}
_UNAVAILABLE: _Responses = {503: {"model": ErrorDetail, "description": "Redis is unreachable."}}

SymbolPath = Annotated[str, Path(description="Ticker symbol, case-insensitive.", max_length=64)]


class ApiError(Exception):
    """Rendered as ``{"detail": message}`` with ``status_code`` by the app's handler."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class HistoryReader(Protocol):
    """What the history route needs of ``history.HistoryService`` (not imported here:
    it pulls in yfinance and pandas)."""

    async def get(
        self, symbol: str, start: datetime | None, end: datetime | None, interval: str
    ) -> Any: ...


# -- dependencies: what the app's lifespan put in app.state ------------------------


def _reads(request: Request) -> Reads:
    return request.app.state.reads


def _settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def _history(request: Request) -> HistoryReader:
    return request.app.state.history


def _redis(request: Request) -> Redis:
    return request.app.state.redis


ReadsDep = Annotated[Reads, Depends(_reads)]
SettingsDep = Annotated[ApiSettings, Depends(_settings)]
HistoryDep = Annotated[HistoryReader, Depends(_history)]
RedisDep = Annotated[Redis, Depends(_redis)]


def _unavailable(what: str, exc: RedisError) -> ApiError:
    return ApiError(503, f"{what} unavailable: Redis is unreachable ({exc})")


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
async def tickers(reads: ReadsDep, response: Response) -> Any:
    try:
        seq, quotes = await reads.snapshot()
    except RedisError as exc:
        raise _unavailable("quotes are", exc) from None
    response.headers[SEQ_HEADER] = str(seq)
    return quotes


@router.get(
    "/tickers/{symbol}",
    response_model=Quote,
    responses={**_NOT_FOUND, **_BAD_SYMBOL, **_UNAVAILABLE},
    summary="One symbol's latest quote",
)
async def ticker(symbol: SymbolPath, reads: ReadsDep, response: Response) -> Any:
    canonical = _symbol(symbol)
    try:
        seq, quote = await reads.quote(canonical)
    except RedisError as exc:
        raise _unavailable("quotes are", exc) from None
    if quote is None:
        raise ApiError(404, f"unknown symbol: {canonical}")
    response.headers[SEQ_HEADER] = str(seq)
    return quote


# One trading day of 1-minute bars at most is kept (docs/protocol.md).
MAX_BARS = 1440


@router.get(
    "/tickers/{symbol}/bars",
    response_model=list[Bar],
    responses={**_NOT_FOUND, **_BAD_SYMBOL, **_UNAVAILABLE},
    summary="Today's 1-minute bars, newest last",
)
async def bars(
    symbol: SymbolPath,
    reads: ReadsDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_BARS, description="How many of the newest bars.")
    ] = 390,
) -> Any:
    canonical = _symbol(symbol)
    try:
        _, quote = await reads.quote(canonical)
        if quote is None:
            raise ApiError(404, f"unknown symbol: {canonical}")
        found = await reads.bars(canonical, limit)
    except RedisError as exc:
        raise _unavailable("bars are", exc) from None
    return found


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
    service: HistoryDep,
    start: Annotated[datetime | None, Query(description="ISO-8601 date or time.")] = None,
    end: Annotated[datetime | None, Query(description="ISO-8601 date or time.")] = None,
    interval: Annotated[str, Query(max_length=8, description="e.g. 1d, 1h, 5m.")] = "1d",
) -> Any:
    # Imported here: history pulls in yfinance and pandas, which nothing else needs.
    from tickerhub_api.history import HistoryError

    canonical = _symbol(symbol)
    try:
        return await service.get(canonical, start, end, interval)
    except HistoryError as exc:
        raise ApiError(exc.status_code, str(exc)) from None


@router.get(
    "/news",
    response_model=list[NewsItem],
    responses={**_BAD_SYMBOL, **_UNAVAILABLE},
    summary="Recent news, newest first",
)
async def news(
    reads: ReadsDep,
    settings: SettingsDep,
    symbols: Annotated[
        str | None, Query(max_length=4096, description="Comma-separated symbols, e.g. AAPL,MSFT.")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, description="How many items at most.")] = None,
) -> Any:
    wanted: list[str] | None = None
    if symbols is not None:
        try:
            wanted = parse_symbol_list(symbols)
        except InvalidSymbolError as exc:
            raise ApiError(422, str(exc)) from None
    count = min(limit or settings.news_default_limit, settings.news_max_limit)
    try:
        return await reads.news(count, wanted)
    except RedisError as exc:
        raise _unavailable("news is", exc) from None


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Any:
    return {"status": "ok"}


async def _producer_beat(reads: Reads) -> int | None:
    """Epoch ms of the producer's last heartbeat; None if expired, absent or unreadable."""
    try:
        async with asyncio.timeout(READY_PING_TIMEOUT):
            return await reads.producer_beat()
    except (RedisError, OSError, TimeoutError, ValueError):
        return None


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready."}},
    summary="Redis reachable and snapshot loaded",
)
async def readyz(reads: ReadsDep, redis: RedisDep) -> Any:
    try:
        async with asyncio.timeout(READY_PING_TIMEOUT):
            redis_ok = bool(await redis.ping())
    except (RedisError, OSError, TimeoutError):
        redis_ok = False
    beat = await _producer_beat(reads) if redis_ok else None
    status = reads.status()
    ready = redis_ok and status.ready
    body = {
        "status": "ready" if ready else "not ready",
        "redis": redis_ok,
        "snapshot": status.ready,
        "seq": status.seq,
        "symbols": status.symbols,
        "connections": status.connections,
        "producer_age_s": None if beat is None else max(0.0, (wire.now_ms() - beat) / 1000),
    }
    return JSONResponse(body, status_code=200 if ready else 503)
