"""The naive baseline: what a simple FastAPI + Redis ticker looks like.

A yardstick for the benchmark only, never used by the product. Per WebSocket
client it opens its own Redis pub/sub connection, decodes every message with
the stdlib ``json`` and re-encodes it for that client, filters the watchlist by
walking the diff, and awaits each send inline. It speaks the subset of the
protocol the bench uses: a snapshot on connect, ``{"watchlist": [...]}`` answered
with a snapshot of those symbols, then ``diff`` messages.

Run it like the api: ``REDIS_URL=... PORT=... python -m tickerhub_bench.baseline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("KEY_PREFIX", "")
PRICES = f"{PREFIX}prices"
PRICES_SEQ = f"{PREFIX}prices:seq"
CHANNEL = f"{PREFIX}price-diffs"


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = Redis.from_url(REDIS_URL, max_connections=100_000)
    yield
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


async def load_snapshot(redis: Redis) -> tuple[int, dict[str, Any]]:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(PRICES_SEQ)
        pipe.hgetall(PRICES)
        raw_seq, raw = await pipe.execute()
    quotes = {k.decode(): json.loads(v) for k, v in raw.items()}
    return int(raw_seq or 0), quotes


@app.get("/readyz")
async def readyz() -> JSONResponse:
    await app.state.redis.ping()
    return JSONResponse({"status": "ok"})


@app.get("/tickers")
async def tickers() -> JSONResponse:
    _, quotes = await load_snapshot(app.state.redis)
    return JSONResponse(quotes)


@app.websocket("/ws/prices")
async def prices(ws: WebSocket) -> None:
    await ws.accept()
    redis = Redis.from_url(REDIS_URL)  # one connection per client, as simple tickers do
    pubsub = redis.pubsub()
    await pubsub.subscribe(CHANNEL)
    state: dict[str, Any] = {"watch": None, "seq": 0}

    async def send_snapshot() -> None:
        seq, quotes = await load_snapshot(app.state.redis)
        watch = state["watch"]
        if watch is not None:
            quotes = {s: q for s, q in quotes.items() if s in watch}
        state["seq"] = seq
        await ws.send_text(json.dumps({"type": "snapshot", "seq": seq, "data": quotes}))

    async def receive() -> None:
        while True:
            msg = json.loads(await ws.receive_text())
            if isinstance(msg, dict) and isinstance(msg.get("watchlist"), list):
                state["watch"] = {str(s).upper() for s in msg["watchlist"]}
                await send_snapshot()

    async def forward() -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            msg = json.loads(message["data"])
            if msg.get("type") != "diff" or msg["seq"] <= state["seq"]:
                continue
            watch = state["watch"]
            data = msg["data"]
            if watch is not None:
                data = {s: q for s, q in data.items() if s in watch}
                if not data:
                    continue
            out = {"type": "diff", "seq": msg["seq"], "ts": msg.get("ts"), "data": data}
            await ws.send_text(json.dumps(out))

    await send_snapshot()
    tasks = [asyncio.create_task(receive()), asyncio.create_task(forward())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await pubsub.aclose()
        with contextlib.suppress(Exception):
            await redis.aclose()


def main() -> None:
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8001")),
        log_level="warning",
        backlog=16384,
    )


if __name__ == "__main__":
    main()
