"""Resume, as issue 9 specifies it, before the api implements it: a peer speaking that
protocol (a websockets server in this process) checks what the client asks for and
answers the way the spec says. Once the api resumes, the same flow runs against it in
test_live.py's kill-and-restart test (the client sends since/epoch as soon as snapshots
carry an epoch)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve

from tickerhub_client import Backoff, Connected, PricesClient, Reconnecting, Snapshot


def quote(symbol: str, seq: int, price: float) -> dict[str, Any]:
    return {"symbol": symbol, "seq": seq, "price": price}


async def test_reconnect_resumes_with_seq_epoch_and_symbols() -> None:
    requests: list[dict[str, list[str]]] = []
    received: list[str] = []
    resumed = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        requests.append(query)
        if len(requests) == 1:
            data = {"AAPL": quote("AAPL", 9, 1.0), "MSFT": quote("MSFT", 10, 2.0)}
            await ws.send(
                orjson.dumps(
                    {
                        "type": "snapshot",
                        "seq": 10,
                        "epoch": "E1",
                        "data": data,
                        "watchlist": ["AAPL", "MSFT"],
                        "unknown": [],
                    }
                ).decode()
            )
            diff = {"AAPL": {"symbol": "AAPL", "seq": 11, "price": 1.5}}
            await ws.send(orjson.dumps({"type": "diff", "seq": 11, "data": diff}).decode())
            await ws.close(1012, "restarting")
            return
        # Only MSFT changed while the client was away.
        answer = {
            "type": "snapshot",
            "partial": True,
            "resumed": True,
            "seq": 14,
            "epoch": "E1",
            "data": {"MSFT": quote("MSFT", 13, 3.0)},
        }
        await ws.send(orjson.dumps(answer).decode())
        resumed.set()
        async for message in ws:
            received.append(str(message))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = PricesClient(
            f"ws://127.0.0.1:{port}",
            symbols=["AAPL", "MSFT"],
            backoff=Backoff(initial=0.05, maximum=0.1),
            ping_interval=None,
        )
        events: list[Any] = []

        async def run() -> None:
            async for event in client:
                events.append(event)

        task = asyncio.create_task(run())
        await asyncio.wait_for(resumed.wait(), 10)
        await asyncio.sleep(0.2)  # a watchlist message, if the client wrongly sent one
        await client.close()
        await asyncio.wait_for(task, 10)

    assert requests[0] == {"symbols": ["AAPL,MSFT"]}
    assert requests[1] == {
        "symbols": ["AAPL,MSFT"],
        "since": ["11"],
        "epoch": ["E1"],
        "fields": ["changed"],
    }
    assert received == []  # the server took the watchlist from the URL: nothing to resend
    assert client.quotes == {"AAPL": quote("AAPL", 11, 1.5), "MSFT": quote("MSFT", 13, 3.0)}
    assert (client.seq, client.epoch) == (14, "E1")
    reconnecting = next(e for e in events if isinstance(e, Reconnecting))
    assert (reconnecting.code, reconnecting.reason) == (1012, "restarting")
    assert [e.attempt for e in events if isinstance(e, Connected)] == [0, 1]
    answer = [e for e in events if isinstance(e, Snapshot)][-1]
    assert (answer.resumed, answer.partial) == (True, True)
