"""A fake Yahoo price streamer: a real WebSocket server on 127.0.0.1 speaking Yahoo's protocol.

Clients send ``{"subscribe": [...]}`` / ``{"unsubscribe": [...]}``; the server
sends ``{"type": "pricing", "message": "<base64>"}`` frames whose base64 is a
``PricingData`` built with yfinance's own ``pricing_pb2`` (so the decoding under
test is yfinance's, as against Yahoo). Tests drive it from their event loop:
:meth:`FakeStreamer.tick` (to the connections subscribed to the symbol, or to all
with ``force=True``), :meth:`send_raw` (garbage), :meth:`drop` (close every
connection mid-run), :meth:`stop`/:meth:`start` (refuse connections, then accept
again on the same port). Silence is simply not ticking: the server still answers
WebSocket pings, as Yahoo's does, so only a frame watchdog notices.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any, Self

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from tickerhub_yahoo.streamer import pricing_data_class


def pricing_frame(symbol: str, price: float, time_ms: int | None = None, **fields: Any) -> str:
    """One frame as Yahoo sends it; ``fields`` are ``PricingData`` field names
    (``change``, ``day_volume``, ``market_hours``, ``short_name`` ...)."""
    message = pricing_data_class()(
        id=symbol,
        price=price,
        time=int(time.time() * 1000) if time_ms is None else time_ms,
        **fields,
    )
    encoded = base64.b64encode(message.SerializeToString()).decode()
    return json.dumps({"type": "pricing", "message": encoded})


class FakeStreamer:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.subscriptions: dict[ServerConnection, set[str]] = {}
        self.subscribes: list[list[str]] = []  # every subscribe message, in order
        self.unsubscribes: list[list[str]] = []
        self.accepted = 0  # connections accepted, ever
        self.sent = 0  # frames sent (one per connection)
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/?version=2"

    @property
    def subscribed(self) -> set[str]:
        """Every symbol some live connection is subscribed to."""
        return set().union(*self.subscriptions.values()) if self.subscriptions else set()

    async def start(self) -> Self:
        """Listen (again, on the same port after :meth:`stop`)."""
        # yfinance's import (for pricing_pb2) takes seconds: now, not in the first tick.
        await asyncio.to_thread(pricing_data_class)
        self._server = await serve(self._handle, "127.0.0.1", self.port, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every connection and stop listening (connections are refused)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, ws: ServerConnection) -> None:
        self.accepted += 1
        self.subscriptions[ws] = set()
        try:
            async for raw in ws:
                try:
                    request = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(request, dict):
                    continue
                if isinstance(request.get("subscribe"), list):
                    symbols = [str(s) for s in request["subscribe"]]
                    self.subscribes.append(symbols)
                    self.subscriptions[ws].update(symbols)
                if isinstance(request.get("unsubscribe"), list):
                    symbols = [str(s) for s in request["unsubscribe"]]
                    self.unsubscribes.append(symbols)
                    self.subscriptions[ws].difference_update(symbols)
        except ConnectionClosed:
            pass
        finally:
            self.subscriptions.pop(ws, None)

    def tick(
        self,
        symbol: str,
        price: float,
        time_ms: int | None = None,
        force: bool = False,
        **fields: Any,
    ) -> int:
        """Send one tick to the connections subscribed to ``symbol`` (all: ``force``);
        returns how many got it."""
        targets = [ws for ws, subs in self.subscriptions.items() if force or symbol.upper() in subs]
        if targets:
            broadcast(targets, pricing_frame(symbol, price, time_ms, **fields))
            self.sent += len(targets)
        return len(targets)

    def send_raw(self, text: str | bytes) -> int:
        """Send ``text`` as is to every connection (garbage, truncated frames ...)."""
        targets = list(self.subscriptions)
        if targets:
            broadcast(targets, text)
        return len(targets)

    async def drop(self) -> None:
        """Close every connection now (the server keeps listening)."""
        connections = list(self.subscriptions)
        await asyncio.gather(*(ws.close(1011, "fake streamer: dropped") for ws in connections))
