"""1-minute bars end to end: the poller (simulated source), redis-server and the api as
real processes; REST and ``/ws/prices`` bar messages must agree."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import websockets

from tickerhub_testkit.processes import Procs, poller_process, start_api
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.ws import recv, recv_until

pytestmark = pytest.mark.integration


async def test_rest_and_websocket_bars_agree(redis_server: Any, procs: Procs) -> None:
    poller = procs(poller_process(redis_server.url, ["AAPL", "MSFT"], POLL_FREQ="0.3"))
    api = start_api(procs, redis_server.url)
    async with httpx.AsyncClient(base_url=api.http, timeout=10) as http:
        await eventually(
            lambda: _has_bars(http, "AAPL"), "AAPL bars over REST", limit=30, interval=0.2
        )
        assert (await http.get("/tickers/NOPE/bars")).status_code == 404
        assert (await http.get("/tickers/no%20way/bars")).status_code == 422
        for bad in ("0", "1441", "x"):
            answer = await http.get(f"/tickers/AAPL/bars?limit={bad}")
            assert answer.status_code == 422, bad
            assert "detail" in answer.json()

        bars_by_url: dict[tuple[str, str], dict] = {}
        bars_by_msg: dict[tuple[str, str], dict] = {}
        async with (
            websockets.connect(f"{api.ws}/ws/prices?bars=1") as by_url,
            websockets.connect(f"{api.ws}/ws/prices") as by_msg,
        ):
            await by_url.send('{"watchlist": ["AAPL"]}')
            await by_msg.send('{"watchlist": ["MSFT"]}')
            await by_msg.send('{"bars": true}')
            assert await recv_until(by_msg, lambda m: m.get("type") == "bars") == {
                "type": "bars",
                "enabled": True,
            }
            await by_msg.send('{"bars": "yes"}')
            error = await recv_until(by_msg, lambda m: m.get("type") == "error")
            assert error["code"] == "bad_type"

            async def read(ws: Any, into: dict) -> None:
                while True:
                    message = await recv(ws, limit=30)
                    if message["type"] == "bar":
                        key = (message["symbol"], message["t"])
                        assert message["revision"] > into.get(key, {"revision": 0})["revision"]
                        into[key] = message

            readers = [
                asyncio.create_task(read(by_url, bars_by_url)),
                asyncio.create_task(read(by_msg, bars_by_msg)),
            ]
            await eventually(
                lambda: len(bars_by_url) > 0 and len(bars_by_msg) > 0, "bar messages", limit=30
            )
            # Stop the poller: its last bars are written and published; then the views settle.
            await asyncio.to_thread(poller.stop)
            await asyncio.sleep(1.0)
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

        assert {s for s, _ in bars_by_url} == {"AAPL"}  # only the watched symbols
        assert {s for s, _ in bars_by_msg} == {"MSFT"}
        for symbol, seen in (("AAPL", bars_by_url), ("MSFT", bars_by_msg)):
            rest = (await http.get(f"/tickers/{symbol}/bars", params={"limit": 1440})).json()
            assert rest == sorted(rest, key=lambda b: b["t"])  # newest last
            by_t = {b["t"]: b for b in rest}
            for (_, t), bar in seen.items():
                assert {"type": "bar", **by_t[t]} == bar
            one = (await http.get(f"/tickers/{symbol}/bars?limit=1")).json()
            assert one == rest[-1:]


async def _has_bars(http: httpx.AsyncClient, symbol: str) -> bool:
    answer = await http.get(f"/tickers/{symbol}/bars")
    return answer.status_code == 200 and len(answer.json()) > 0
