"""Async clients for ``/ws/prices`` and ``/ws/news``: connect, authenticate, keep the
watchlist and the merged view across reconnects, and yield typed events.

``async for event in client`` drives everything: the client connects when iteration
starts, reconnects (exponential backoff with jitter) when the connection drops, and
stops after ``close()``. Trouble retrying cannot fix (a bad API key) raises
:class:`~tickerhub_client.errors.ConnectionRejected` instead of reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Generic, Literal, Self, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tickerhub_client.backoff import Backoff
from tickerhub_client.errors import ConnectionRejected
from tickerhub_client.events import Closed, Connected, Event, NewsItem, Quote, Reconnecting
from tickerhub_client.view import NewsView, QuoteView, decode

SYMBOL_RE = re.compile(r"^\^?[A-Z0-9][A-Z0-9.=-]{0,18}$")
CLOSE_POLICY = 1008  # bad key, auth timeout, rate-limit abuse: retrying will not help
REFUSED_HTTP = frozenset({401, 403, 404})  # handshake refusals that a retry cannot fix
STREAMS = ("/ws/prices", "/ws/news")

V = TypeVar("V", QuoteView, NewsView)


def canonical_symbols(symbols: Iterable[str]) -> list[str]:
    """Upper-cased, unique, in order; ``ValueError`` for one that cannot be a ticker."""
    if isinstance(symbols, str):
        raise TypeError("symbols must be a list of strings, not one string")
    out: list[str] = []
    for symbol in symbols:
        canonical = symbol.strip().upper()
        if not SYMBOL_RE.match(canonical):
            raise ValueError(f"not a valid ticker symbol: {symbol!r}")
        if canonical not in out:
            out.append(canonical)
    return out


def base_url(url: str) -> str:
    """The hub's base WebSocket URL: ``http(s)`` becomes ``ws(s)``, a stream path is cut."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"expected a ws://, wss://, http:// or https:// URL, got {url!r}")
    path = parts.path.rstrip("/")
    for stream in STREAMS:
        path = path.removesuffix(stream)
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class _StreamClient(Generic[V]):
    path: str

    def __init__(
        self,
        url: str,
        view: V,
        *,
        symbols: Iterable[str] | None = None,
        api_key: str | None = None,
        auth: Literal["header", "message"] = "header",
        backoff: Backoff | None = None,
        ping_interval: float | None = 20.0,
        open_timeout: float = 10.0,
        max_size: int | None = 64 * 1024 * 1024,
    ) -> None:
        if auth not in ("header", "message"):
            raise ValueError("auth must be 'header' or 'message'")
        self.url = base_url(url) + self.path
        self.view: V = view
        self.symbols: list[str] | None = None if symbols is None else canonical_symbols(symbols)
        self.api_key = api_key
        self.auth = auth
        self.backoff = backoff or Backoff()
        self.ping_interval = ping_interval
        self.open_timeout = open_timeout
        self.max_size = max_size
        self._ws: ClientConnection | None = None
        self._unconfirmed: set[str] | None = None  # watchlist sent, server not yet applying it
        self._closing = asyncio.Event()
        self._iterating = False

    # -- what the caller controls ------------------------------------------------------

    async def set_watchlist(self, symbols: Iterable[str] | None) -> None:
        """Replace the watchlist (``None``: every symbol); kept across reconnects."""
        self.symbols = None if symbols is None else canonical_symbols(symbols)
        if self._unconfirmed is not None:
            self._unconfirmed = None if self.symbols is None else set(self.symbols)
        await self._send({"watchlist": self.symbols})

    async def subscribe(self, symbols: Iterable[str]) -> None:
        """Add symbols to the watchlist (a ``partial`` snapshot of them follows)."""
        added = canonical_symbols(symbols)
        if self.symbols is not None:
            self.symbols += [s for s in added if s not in self.symbols]
        if self._unconfirmed is not None:
            self._unconfirmed.update(added)
        await self._send({"subscribe": added})

    async def unsubscribe(self, symbols: Iterable[str]) -> None:
        """Remove symbols from the watchlist (an ``Unsubscribed`` event follows)."""
        removed = canonical_symbols(symbols)
        if self.symbols is not None:
            self.symbols = [s for s in self.symbols if s not in removed]
        if self._unconfirmed is not None:
            self._unconfirmed.difference_update(removed)
        await self._send({"unsubscribe": removed})

    async def close(self) -> None:
        """Stop: close the connection; iteration yields ``Closed`` and ends."""
        self._closing.set()
        if self._ws is not None:
            await self._ws.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the connection loop -----------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._iterating:
            raise RuntimeError("this client is already being iterated")
        self._iterating = True
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        attempt = 0
        try:
            while not self._closing.is_set():
                code: int | None = None
                reason: str | None = None
                try:
                    ws = await self._connect()
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if status in REFUSED_HTTP:
                        body = (exc.response.body or b"").decode(errors="replace")
                        raise ConnectionRejected(status, body.strip()) from exc
                    code, reason = None, f"HTTP {status}"
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    reason = str(exc) or type(exc).__name__
                else:
                    if self._closing.is_set():  # close() came while the handshake ran
                        await ws.close()
                        break
                    yield Connected(self.url, attempt)
                    try:
                        async for event in self._session(ws):
                            attempt = 0  # the server talks to us: this connection worked
                            yield event
                        # A normal close (1000, 1001) ends the frames without an exception.
                        code, reason = ws.close_code, ws.close_reason
                    except ConnectionClosed as exc:
                        code = exc.rcvd.code if exc.rcvd is not None else 1006
                        reason = exc.rcvd.reason if exc.rcvd is not None else "connection lost"
                        if code == CLOSE_POLICY and not self._closing.is_set():
                            raise ConnectionRejected(code, reason) from exc
                    finally:
                        self._ws = None
                        await ws.close()
                if self._closing.is_set():
                    break
                attempt += 1
                delay = self.backoff.delay(attempt)
                yield Reconnecting(attempt, delay, code, reason)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
            yield Closed(1000, "closed by the client")
        finally:
            self._iterating = False

    async def _connect(self) -> ClientConnection:
        headers = {}
        if self.api_key is not None and self.auth == "header":
            headers["X-API-Key"] = self.api_key
        ws = await connect(
            self._url(),
            additional_headers=headers,
            open_timeout=self.open_timeout,
            max_size=self.max_size,
        )
        self._ws = ws
        return ws

    def _url(self) -> str:
        """The stream URL, with the watchlist (and a resume point) a server may honour."""
        params = self._params()
        return f"{self.url}?{urlencode(params, safe=',')}" if params else self.url

    def _params(self) -> dict[str, str]:
        return {} if self.symbols is None else {"symbols": ",".join(self.symbols)}

    async def _session(self, ws: ClientConnection) -> AsyncIterator[Any]:
        pinger = asyncio.create_task(self._keepalive(ws)) if self.ping_interval else None
        first = True
        self._unconfirmed = None
        try:
            if self.api_key is not None and self.auth == "message":
                await ws.send(orjson.dumps({"auth": self.api_key}).decode())
            async for frame in ws:
                message = decode(frame)
                if message is None:
                    continue
                if first and message.get("type") == "snapshot":
                    first = False
                    if self.symbols is not None and not _states_watchlist(message):
                        # The server did not take the watchlist from the URL (it predates
                        # that): set it the classic way. Until it confirms, keep what it
                        # sends for every symbol to the watched ones (that is exact).
                        self._unconfirmed = set(self.symbols)
                        await ws.send(orjson.dumps({"watchlist": self.symbols}).decode())
                if "watchlist" in message:
                    self._unconfirmed = None
                    self.symbols = message["watchlist"]  # the server's word, canonical
                elif self._unconfirmed is not None:
                    message = self._restrict(message, self._unconfirmed)
                    if message is None:
                        continue
                event = self.view.apply(message)
                if event is not None:
                    yield event
        finally:
            if pinger is not None:
                pinger.cancel()

    def _restrict(self, message: Mapping[str, Any], symbols: set[str]) -> Mapping[str, Any] | None:
        """``message`` with only what concerns ``symbols``; ``None`` if nothing does."""
        return message

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Text ``ping`` now and then: a server with ``WS_IDLE_TIMEOUT`` counts only
        client messages (the WebSocket-level pings the library answers do not count)."""
        assert self.ping_interval is not None
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.ping_interval)
                await ws.send("ping")

    async def _send(self, message: Mapping[str, Any]) -> None:
        ws = self._ws
        if ws is not None:  # else the next connection sends the watchlist
            with contextlib.suppress(ConnectionClosed):
                await ws.send(orjson.dumps(message).decode())


def _states_watchlist(snapshot: Mapping[str, Any]) -> bool:
    """Whether a first snapshot shows the server applied ``?symbols=`` (or a resume)."""
    return "watchlist" in snapshot or "resumed" in snapshot


class PricesClient(_StreamClient[QuoteView]):
    """``/ws/prices``: ``quotes`` is the merged view of the watchlist, kept across
    reconnects; a reconnect offers the server ``seq`` + ``epoch`` to resume from."""

    path = "/ws/prices"

    def __init__(
        self,
        url: str = "ws://localhost:8000",
        *,
        resume: bool = True,
        max_rate: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(url, QuoteView(), **kwargs)
        self.resume = resume
        # Diff messages per second the server may send (0.1-100); None: as they come.
        # Sent as ?max_rate= on every (re)connect.
        self.max_rate = max_rate

    async def set_max_rate(self, max_rate: float | None) -> None:
        """Change the pace now (a ``max_rate`` message; ``Message`` event ``max_rate``
        answers it) and on every reconnect."""
        self.max_rate = max_rate
        await self._send({"max_rate": max_rate})

    @property
    def quotes(self) -> Mapping[str, Quote]:
        return self.view.quotes

    @property
    def seq(self) -> int | None:
        return self.view.seq

    @property
    def epoch(self) -> str | None:
        return self.view.epoch

    def _restrict(self, message: Mapping[str, Any], symbols: set[str]) -> Mapping[str, Any] | None:
        data = message.get("data")
        if message.get("type") not in ("snapshot", "diff") or not isinstance(data, Mapping):
            return message
        kept = {s: q for s, q in data.items() if s in symbols}
        if not kept and message["type"] == "diff":
            return None
        return {**message, "data": kept}

    def _params(self) -> dict[str, str]:
        params = super()._params()
        view = self.view
        if self.resume and view.seq is not None and view.epoch is not None:
            # The view merges a resume answer field by field: the changed fields will do.
            params.update(since=str(view.seq), epoch=view.epoch, fields="changed")
        if self.max_rate is not None:
            params["max_rate"] = f"{self.max_rate:g}"
        return params


class NewsClient(_StreamClient[NewsView]):
    """``/ws/news``: ``items`` are the recent items of the watchlist, newest first."""

    path = "/ws/news"

    def __init__(self, url: str = "ws://localhost:8000", *, max_items: int = 200, **kwargs: Any):
        super().__init__(url, NewsView(max_items), **kwargs)

    def _restrict(self, message: Mapping[str, Any], symbols: set[str]) -> Mapping[str, Any] | None:
        data = message.get("data")
        if message.get("type") not in ("snapshot", "news") or not isinstance(data, list):
            return message
        kept = [i for i in data if isinstance(i, Mapping) and symbols & set(i.get("tickers", ()))]
        if not kept and message["type"] == "news":
            return None
        return {**message, "data": kept}

    @property
    def items(self) -> list[NewsItem]:
        return self.view.items
