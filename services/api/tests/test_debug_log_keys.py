"""API keys never reach the log, at DEBUG either: every way a key can travel, valid or
not, then the api's whole output is searched for each key.

The api runs as a subprocess at ``LOG_LEVEL=DEBUG`` (uvicorn then passes DEBUG to
websockets, which logs every handshake header and frame unless told not to).
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.ws import recv, recv_until

from .conftest import Producer, frames_until_closed

pytestmark = pytest.mark.integration

VALID = [f"valid-key-{i:02d}-0123456789abcdef" for i in range(8)]
INVALID = [f"wrong-key-{i:02d}-0123456789abcdef" for i in range(6)]


async def admitted(ws: Any) -> None:
    assert (await recv(ws))["type"] == "snapshot"
    await ws.send("ping")  # a frame after authentication: logged (the log is on)
    assert await recv(ws) == "pong"


async def refused(ws: Any) -> None:
    frames, close = await frames_until_closed(ws)
    assert frames == []
    assert close.code == 1008


async def test_no_key_reaches_the_debug_log(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(
        procs, redis_server.url, LOG_LEVEL="DEBUG", API_KEYS=",".join(VALID), WS_AUTH_TIMEOUT="2"
    )
    url = f"{api.ws}/ws/prices"
    # Keys in the URL and in the two headers the api reads.
    async with websockets.connect(f"{url}?api_key={VALID[0]}") as ws:
        await admitted(ws)
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {VALID[1]}"}
    ) as ws:
        await admitted(ws)
    async with websockets.connect(url, additional_headers={"X-API-Key": VALID[2]}) as ws:
        await admitted(ws)
    # A first message: plain, with whitespace, fragmented.
    async with websockets.connect(url) as ws:
        await ws.send(orjson.dumps({"auth": VALID[3]}).decode())
        await admitted(ws)
    async with websockets.connect(url) as ws:
        await ws.send('{ "auth" :\n  "' + VALID[4] + '" }')
        await admitted(ws)
    async with websockets.connect(url) as ws:
        await ws.send(['{"auth": "', VALID[5][:10], VALID[5][10:], '"}'])  # 4 fragments
        await admitted(ws)
    # Sent again once authenticated (the api ignores it), in a long message.
    async with websockets.connect(url, additional_headers={"X-API-Key": VALID[6]}) as ws:
        await admitted(ws)
        await ws.send('{"auth": "' + VALID[7] + '"}')
        await ws.send('{"x": "' + "a" * 300 + '", "auth": "' + VALID[7] + '"}')
        await ws.send("ping")
        assert await recv_until(ws, lambda m: m == "pong") == "pong"  # after bad_message
    # Refused: wrong keys everywhere, including where the api does not look for one.
    async with websockets.connect(f"{url}?api_key={INVALID[0]}") as ws:
        await refused(ws)
    async with websockets.connect(url) as ws:
        await ws.send('{"padding": "' + "p" * 300 + '", "auth": "' + INVALID[1] + '"}')
        await refused(ws)
    async with websockets.connect(url) as ws:
        await ws.send(['{"auth" : "', INVALID[2], '"}'])
        await refused(ws)
    headers = {"Sec-WebSocket-Protocol": INVALID[3], "X-Token": INVALID[4]}
    with contextlib.suppress(websockets.InvalidHandshake):
        async with websockets.connect(url, additional_headers=headers) as ws:
            await refused(ws)
    async with httpx.AsyncClient(base_url=api.http) as http:
        for headers in ({"X-API-Key": VALID[0]}, {"Authorization": f"Bearer {INVALID[5]}"}):
            await http.get("/tickers", headers=headers)
        await http.get(f"/tickers?api_key={INVALID[5]}")

    output = api.output()
    assert "DEBUG" in output
    assert "< text (4 chars) ping" in output  # messages are logged after authentication
    assert "x-token: ***" in output  # the handshake is logged, unknown values masked
    leaked = [key for key in VALID + INVALID if key in output]
    assert leaked == [], f"keys in the log: {leaked}\n{output}"
    # Even part of a key (a fragment) never shows.
    assert not [k for k in VALID + INVALID if k[:10] in output or k[10:] in output]
