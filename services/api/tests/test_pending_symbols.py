"""Never-published symbols a connection may watch are bounded (issue 14, 10), against the
api as a subprocess: per connection and per process, with a clear error past either."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import websockets

from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.ws import recv

from .conftest import Producer

pytestmark = pytest.mark.integration


async def command(ws: Any, message: dict[str, Any]) -> Any:
    await ws.send(orjson.dumps(message).decode())
    return await recv(ws)


async def test_unknown_symbols_are_capped_per_connection_and_per_process(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(
        procs, redis_server.url, WS_MAX_UNKNOWN_SYMBOLS="5", WS_MAX_PENDING_SYMBOLS="10"
    )
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        assert (await recv(ws))["type"] == "snapshot"
        six = [f"NOPE{i}" for i in range(6)]
        refused = await command(ws, {"watchlist": ["AAPL", *six]})
        assert refused["type"] == "error"
        assert refused["code"] == "too_many_unknown"
        assert "at most 5" in refused["message"]
        reply = await command(ws, {"watchlist": ["AAPL", *six[:5]]})  # 5 unknown: fine
        assert reply["type"] == "snapshot"
        assert reply["watchlist"] == sorted(["AAPL", *six[:5]])
        assert reply["unknown"] == six[:5]
        refused = await command(ws, {"subscribe": ["NOPE9"]})  # a sixth by subscribing
        assert refused["code"] == "too_many_unknown"
        assert (await command(ws, {"subscribe": ["MSFT"]}))["type"] == "snapshot"  # known: fine

        # Per process: distinct unknown symbols watched, whoever watches them.
        others = []
        try:
            for n in range(1):
                other = await websockets.connect(f"{api.ws}/ws/prices")
                others.append(other)
                await recv(other)
                symbols = [f"P{n}X{i}" for i in range(5)]
                assert (await command(other, {"watchlist": symbols}))["type"] == "snapshot"
            # 10 distinct pending now, the process's cap: only known or shared ones pass.
            late = await websockets.connect(f"{api.ws}/ws/prices")
            others.append(late)
            await recv(late)
            refused = await command(late, {"watchlist": ["NEW1"]})
            assert refused["code"] == "too_many_unknown"
            assert "per api process" in refused["message"]
            shared = await command(late, {"watchlist": ["NOPE0", "AAPL"]})  # already watched
            assert shared["type"] == "snapshot"
            assert (await command(late, {"watchlist": None}))["type"] == "snapshot"
        finally:
            for other in others:
                await other.close()
        # The connection that was refused stays open and usable.
        assert (await command(ws, {"subscribe": ["AAPL"]}))["type"] == "snapshot"
