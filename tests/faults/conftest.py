"""Helpers for the fault and hostile-input tests: real processes, real clients.

Timeouts here only keep a broken build from hanging; nothing asserts a speed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import orjson
import websockets

from tickerhub_client import Diff, QuoteView, Snapshot
from tickerhub_testkit.processes import ApiProcess, ServiceProcess
from tickerhub_testkit.processes import poller_process as testkit_poller
from tickerhub_testkit.wait import WAIT, eventually
from tickerhub_testkit.ws import decode

TICKERS = ("AAPL", "MSFT", "GOOG", "TSLA")


def poller_process(redis_url: str, **env: str) -> ServiceProcess:
    return testkit_poller(redis_url, TICKERS, **env)


# -- WebSocket clients ----------------------------------------------------------


class View(QuoteView):
    """tickerhub_client's merged view, plus what the fault tests count and check."""

    def __init__(self, name: str = "") -> None:
        super().__init__()
        self.name = name
        self.messages: list[Any] = []
        self.pongs = 0
        self.snapshots = 0
        self.diffs = 0
        self.seq_went_back = False
        self.closed: websockets.ConnectionClosed | None = None

    def apply(self, frame: Any) -> Any:
        self.messages.append(frame)
        before = self.seq
        event = super().apply(frame)
        if event is None:
            self.pongs += 1
        elif isinstance(event, Snapshot | Diff):
            self.snapshots += isinstance(event, Snapshot)
            self.diffs += isinstance(event, Diff)
            if before is not None and event.seq < before:
                self.seq_went_back = True
        return event


async def follow(ws: Any, view: View) -> None:
    try:
        async for frame in ws:
            view.apply(decode(frame))
    except websockets.ConnectionClosed as exc:
        view.closed = exc
    else:
        view.closed = ws.close_exc if hasattr(ws, "close_exc") else None


class Client:
    """A connected ``/ws/prices`` client that follows the stream in a task."""

    def __init__(self, ws: Any, view: View) -> None:
        self.ws = ws
        self.view = view
        self.task = asyncio.create_task(follow(ws, view))

    @classmethod
    async def connect(cls, url: str, watchlist: list[str] | None = None, name: str = "") -> Client:
        ws = await websockets.connect(url, open_timeout=WAIT, max_size=None)
        client = cls(ws, View(name))
        if watchlist is not None:
            await ws.send(orjson.dumps({"watchlist": watchlist}).decode())
            await eventually(
                lambda: any(
                    isinstance(m, dict) and m.get("watchlist") is not None
                    for m in client.view.messages
                ),
                f"{name}: watchlist reply",
            )
        return client

    async def ping(self) -> None:
        """Send ``ping`` and wait for its ``pong``."""
        before = self.view.pongs
        await self.ws.send("ping")
        await eventually(lambda: self.view.pongs > before, f"{self.view.name}: pong")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


async def get(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        return await http.get(url, **kwargs)


async def wait_status(url: str, status: int, what: str) -> httpx.Response:
    """Poll ``url`` until it answers ``status``; return that response."""

    async def answer() -> httpx.Response | None:
        with contextlib.suppress(httpx.HTTPError):
            response = await get(url)
            if response.status_code == status:
                return response
        return None

    return await eventually(answer, what, interval=0.05)


async def get_json(url: str) -> Any:
    response = await get(url)
    response.raise_for_status()
    return response.json()


async def converge(
    api: ApiProcess, clients: list[Client], watchlists: list[list[str] | None]
) -> None:
    """Wait until each client's merged view equals ``GET /tickers`` (restricted to its
    watchlist). Call once the producers are quiet, so the target stays put."""

    async def matches() -> bool:
        rest = await get_json(f"{api.http}/tickers")
        for client, watch in zip(clients, watchlists, strict=True):
            expected = rest if watch is None else {s: rest[s] for s in watch if s in rest}
            if client.view.quotes != expected:
                return False
        return True

    async def details() -> str:
        rest = await get_json(f"{api.http}/tickers")
        views = {c.view.name: (c.view.seq, c.view.quotes) for c in clients}
        return f"clients never converged to\n{rest}\nviews: {views}"

    try:
        await eventually(matches, "clients to converge on GET /tickers", interval=0.05)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{await details()}") from None
