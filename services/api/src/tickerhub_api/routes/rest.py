"""REST: the snapshot, one quote, its history, recent news, health.

The routes get what they read through FastAPI dependencies (below): the
stream machinery's narrow read view (:class:`~tickerhub_api.stream.reads.Reads`:
quotes from the process's mirror while it is ready, else from Redis), the
history service and the settings, all created with the app (``app.py``). They
answer 503 only if Redis fails: with ``Retry-After`` when the api is overloaded
(every pooled Redis connection busy), "Redis is unreachable" for an outage
(``probes.RedisFailures``). Every quote response carries the seq it reflects in
``X-TickerHub-Seq``, its epoch in ``X-TickerHub-Epoch`` and how long ago Redis was
last heard from in ``X-TickerHub-Age``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from tickerhub_api.interest import InterestRegistry, OnDemandRefused
from tickerhub_api.probes import ReadinessProbe, RedisFailures
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
EPOCH_HEADER = "X-TickerHub-Epoch"
AGE_HEADER = "X-TickerHub-Age"


def _quote_headers(reads: Reads, seq: int, epoch: str) -> dict[str, str]:
    """The seq and epoch a quote response reflects (read together), and (when known) how
    many seconds ago Redis was last heard from: it grows while Redis hangs, so a client
    can tell frozen data."""
    headers = {SEQ_HEADER: str(seq), EPOCH_HEADER: epoch}
    age = reads.age()
    if age is not None:
        headers[AGE_HEADER] = f"{age:.1f}"
    return headers


# FastAPI's ``responses=`` type: keys may be status codes or "default".
_Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: _Responses = {404: {"model": ErrorDetail, "description": "Unknown symbol."}}
_BAD_SYMBOL: _Responses = {
    422: {"model": ErrorDetail, "description": "Not a plausible ticker symbol."}
}
_UNAVAILABLE: _Responses = {
    503: {
        "model": ErrorDetail,
        "description": "Redis is unreachable, or the api is overloaded (with Retry-After).",
    }
}

_NO_FIRST_QUOTE: _Responses = {
    504: {
        "model": ErrorDetail,
        "description": "A symbol asked for on demand had no quote within ON_DEMAND_WAIT.",
    }
}

SymbolPath = Annotated[str, Path(description="Ticker symbol, case-insensitive.", max_length=64)]


class ApiError(Exception):
    """Rendered as ``{"detail": message}`` with ``status_code`` by the app's handler."""

    def __init__(
        self, status_code: int, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers or {}


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


def _interest(request: Request) -> InterestRegistry | None:
    return getattr(request.app.state, "interest", None)


def _probe(request: Request) -> ReadinessProbe:
    return request.app.state.probe


def _failures(request: Request) -> RedisFailures:
    return request.app.state.redis_failures


ReadsDep = Annotated[Reads, Depends(_reads)]
SettingsDep = Annotated[ApiSettings, Depends(_settings)]
HistoryDep = Annotated[HistoryReader, Depends(_history)]
InterestDep = Annotated[InterestRegistry | None, Depends(_interest)]
ProbeDep = Annotated[ReadinessProbe, Depends(_probe)]
FailuresDep = Annotated[RedisFailures, Depends(_failures)]


def _unavailable(failures: RedisFailures, what: str, exc: RedisError) -> ApiError:
    failure = failures.answer(what, exc)
    return ApiError(failure.status_code, failure.detail, failure.headers)


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
async def tickers(reads: ReadsDep, failures: FailuresDep) -> Any:
    # Pre-encoded once per seq and returned as is: no per-request validation or encoding
    # (a /tickers flood used to stall the streams: issue 14). The mirror holds quotes as
    # producers wrote them, checked against the Quote model by the stream tests.
    try:
        seq, epoch, body = await reads.snapshot_json()
    except RedisError as exc:
        raise _unavailable(failures, "quotes are", exc) from None
    return Response(body, media_type="application/json", headers=_quote_headers(reads, seq, epoch))


@router.get(
    "/tickers/{symbol}",
    response_model=Quote,
    responses={**_NOT_FOUND, **_BAD_SYMBOL, **_UNAVAILABLE, **_NO_FIRST_QUOTE},
    summary="One symbol's latest quote",
)
async def ticker(
    symbol: SymbolPath,
    reads: ReadsDep,
    failures: FailuresDep,
    interest: InterestDep,
    response: Response,
) -> Any:
    canonical = _symbol(symbol)
    try:
        seq, epoch, quote = await reads.quote(canonical)
        if quote is None and interest is not None:
            # Not held: asked for on demand, answered once its first quote is in.
            seq, epoch, quote = await interest.first_quote(canonical, reads.quote)
    except RedisError as exc:
        raise _unavailable(failures, "quotes are", exc) from None
    except OnDemandRefused as exc:
        raise ApiError(exc.status_code, exc.detail) from None
    if quote is None:
        raise ApiError(404, f"unknown symbol: {canonical}")
    response.headers.update(_quote_headers(reads, seq, epoch))
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
    failures: FailuresDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_BARS, description="How many of the newest bars.")
    ] = 390,
) -> Any:
    canonical = _symbol(symbol)
    try:
        _, _, quote = await reads.quote(canonical)
        if quote is None:
            raise ApiError(404, f"unknown symbol: {canonical}")
        found = await reads.bars(canonical, limit)
    except RedisError as exc:
        raise _unavailable(failures, "bars are", exc) from None
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
    reads: ReadsDep,
    settings: SettingsDep,
    failures: FailuresDep,
    start: Annotated[datetime | None, Query(description="ISO-8601 date or time.")] = None,
    end: Annotated[datetime | None, Query(description="ISO-8601 date or time.")] = None,
    interval: Annotated[str, Query(max_length=8, description="e.g. 1d, 1h, 5m.")] = "1d",
) -> Any:
    # Imported here: history pulls in yfinance and pandas, which nothing else needs.
    from tickerhub_api.history import HistoryError

    canonical = _symbol(symbol)
    if settings.history_symbols == "held":
        # Yahoo is asked only about symbols this hub polls (HISTORY_SYMBOLS).
        try:
            _, _, quote = await reads.quote(canonical)
        except RedisError as exc:
            raise _unavailable(failures, "history is", exc) from None
        if quote is None:
            raise ApiError(404, f"unknown symbol: {canonical} is not tracked by this hub")
    try:
        return await service.get(canonical, start, end, interval)
    except HistoryError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        raise ApiError(exc.status_code, str(exc), headers) from None


@router.get(
    "/news",
    response_model=list[NewsItem],
    responses={**_BAD_SYMBOL, **_UNAVAILABLE},
    summary="Recent news, newest first",
)
async def news(
    reads: ReadsDep,
    settings: SettingsDep,
    failures: FailuresDep,
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
        items = await reads.news(count, wanted)
    except RedisError as exc:
        raise _unavailable(failures, "news is", exc) from None
    failures.succeeded()
    return items


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Any:
    return {"status": "ok"}


EMPTY_SNAPSHOT_NOTE = (
    "no quotes yet: no producer has written a snapshot to Redis (is the poller running?)"
)

NO_PRODUCER_NOTE = (
    "no producer is alive (the poller's heartbeat expired): every quote is served as "
    "stale until one is back"
)


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready."}},
    summary="Redis reachable and snapshot loaded",
)
async def readyz(reads: ReadsDep, probe: ProbeDep) -> Any:
    # Through the probe's own connection, cached ~1 s: a flood cannot starve it.
    check = await probe.check()
    redis_ok, beat = check.ok, check.producer_beat
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
        "quotes_stale": status.quotes_stale,
    }
    if status.ready and status.symbols == 0:
        # Still ready: the api works and restarting it cannot help; the data is missing.
        body["note"] = EMPTY_SNAPSHOT_NOTE
    elif status.quotes_stale:
        body["note"] = NO_PRODUCER_NOTE
    return JSONResponse(body, status_code=200 if ready else 503)
