"""The api under a real uvicorn, in this process: which send path is engaged, and root_path.

The fast path and the connection guards lean on uvicorn internals (all in
uvicorn_protocols.py). If a uvicorn release changes them, the api would silently
fall back to plain ASGI sends, or lose its deadlines; these tests fail instead:
with ``WS_FAST_PATH`` on, every frame a client gets must have been written by
the flusher, and every uvicorn method the subclasses override must still exist. They use the same uvicorn configuration
as the ``api`` console script (``__main__.server_config``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import fastapi
import httpx
import pytest
import uvicorn
import websockets
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from tickerhub_api.__main__ import server_config
from tickerhub_api.app import create_app
from tickerhub_api.settings import ApiSettings
from tickerhub_api.stream.fastpath import EXTENSION, FastChannel
from tickerhub_api.stream.hub import Hub
from tickerhub_api.stream.protocol import CloseCode
from tickerhub_api.stream.senders import AsgiSender, FastSender
from tickerhub_api.uvicorn_protocols import (
    FastWebSocketProtocol,
    GuardedWebSocketProtocol,
    _HeadGuard,
)
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.wait import WAIT
from tickerhub_testkit.ws import recv

pytestmark = pytest.mark.integration


@asynccontextmanager
async def serving(
    redis_url: str, fast: bool, root_path: str = ""
) -> AsyncIterator[tuple[str, Hub]]:
    """The app under uvicorn on a free port: ``(host:port, its hub)``, once ready."""
    settings = ApiSettings(redis_url=redis_url, ws_fast_path=fast, log_level="WARNING")
    app = create_app(settings)
    config = server_config(app, settings, host="127.0.0.1", port=0, root_path=root_path)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WAIT):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, no event)
                await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            async with asyncio.timeout(WAIT):
                while (await http.get("/readyz")).status_code != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        yield base, app.state.hub
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


def test_the_console_script_uses_the_guarded_protocols() -> None:
    config = server_config(create_app(ApiSettings()), ApiSettings())
    ws, http = config.ws, config.http
    assert isinstance(ws, type)
    assert isinstance(http, type)
    assert issubclass(ws, FastWebSocketProtocol)
    assert issubclass(http, _HeadGuard)
    assert issubclass(http, AutoHTTPProtocol)  # httptools here, h11 without it
    off = server_config(create_app(ApiSettings()), ApiSettings(ws_fast_path=False)).ws
    assert isinstance(off, type)
    assert issubclass(off, GuardedWebSocketProtocol)
    assert not issubclass(off, FastWebSocketProtocol)


# What uvicorn_protocols.py overrides or reads, by class: if a uvicorn release renames
# or drops one, the override silently stops applying (no deadline, no 431...).
_RELIED_ON: dict[type, tuple[str, ...]] = {
    HttpToolsProtocol: ("connection_made", "data_received", "connection_lost", "cycle", "loop"),
    H11Protocol: ("connection_made", "data_received", "connection_lost", "cycle", "loop"),
    WebSocketsSansIOProtocol: (
        "connection_made",
        "data_received",
        "connection_lost",
        "handle_connect",
        "send",
        "send_receive_event_to_app",
        "handle_parser_exception",
        "send_500_response",
        "pause_writing",
        "resume_writing",
    ),
}


@pytest.mark.parametrize("cls", list(_RELIED_ON), ids=lambda c: c.__name__)
def test_the_uvicorn_internals_relied_on_are_there(cls: type) -> None:
    settings = ApiSettings()
    config = server_config(create_app(settings), settings)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        instance = cls(
            config=config, server_state=uvicorn.server.ServerState(), app_state={}, _loop=loop
        )
    finally:
        loop.close()
    for name in _RELIED_ON[cls]:
        assert hasattr(instance, name), f"{cls.__name__}.{name} is gone: see uvicorn_protocols.py"
    if cls is WebSocketsSansIOProtocol:
        # read by the protocol subclass: websockets' ServerProtocol state and uvicorn flags
        for name in ("conn", "frames", "curr_msg_data_type", "handshake_initiated", "queue"):
            assert hasattr(instance, name), name
        for name in ("debug", "handshake_exc", "extensions", "data_to_send", "send_close"):
            assert hasattr(instance.conn, name), name


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "asgi-path"])
async def test_which_send_path_writes_the_frames(
    fast: bool, redis_server: Any, aapl_msft: Producer
) -> None:
    async with (
        serving(redis_server.url, fast) as (base, hub),
        websockets.connect(f"ws://{base}/ws/prices") as ws,
    ):
        snapshot = await recv(ws)
        assert snapshot["type"] == "snapshot"
        assert set(snapshot["data"]) >= {"AAPL", "MSFT"}
        [conn] = hub.prices.connections
        seq = await aapl_msft.publish({"AAPL": {"price": 123.0}})
        diff = await recv(ws)
        assert diff == {**diff, "type": "diff", "seq": seq}
        assert diff["data"]["AAPL"]["price"] == 123.0
        await ws.send("ping")
        assert await recv(ws) == "pong"
        if fast:
            # The scope extension reached the route and the flusher wrote all three frames.
            assert isinstance(conn.sender, FastSender)
            assert hub.flusher.writes >= 3
        else:
            assert isinstance(conn.sender, AsgiSender)
            assert hub.flusher.writes == 0


async def test_the_scope_carries_the_fast_channel(redis_server: Any, aapl_msft: Producer) -> None:
    seen: list[Any] = []
    async with serving(redis_server.url, fast=True) as (base, hub):
        original = hub.prices.attach

        async def attach(conn: Any, opening: Any = None) -> None:
            seen.append(conn.sender._channel)  # the channel the route took from the scope
            await original(conn, opening)

        hub.prices.attach = attach  # type: ignore[method-assign]
        async with websockets.connect(f"ws://{base}/ws/prices") as ws:
            await recv(ws)
    [channel] = seen
    assert isinstance(channel, FastChannel)
    assert channel.usable  # no per-message deflate negotiated
    assert EXTENSION == "tickerhub.fast_send"


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "asgi-path"])
async def test_behind_a_proxy_prefix(
    fast: bool, redis_server: Any, aapl_msft: Producer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``uvicorn --root-path /tickerhub``: a proxy strips the prefix, uvicorn adds it to
    the scope's path. REST and both streams work, the streams through the app's bypass."""
    through_fastapi: list[str] = []
    original = fastapi.FastAPI.__call__

    async def spy(self: Any, scope: Any, receive: Any, send: Any) -> None:
        through_fastapi.append(scope["type"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(fastapi.FastAPI, "__call__", spy)
    async with serving(redis_server.url, fast, root_path="/tickerhub") as (base, hub):
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            response = await http.get("/tickers/aapl")
            assert response.status_code == 200, response.text
            assert response.json()["symbol"] == "AAPL"
            docs = await http.get("/openapi.json")
            assert docs.status_code == 200
        async with websockets.connect(f"ws://{base}/ws/prices") as prices:
            assert (await recv(prices))["type"] == "snapshot"
            await prices.send('{"watchlist": ["MSFT"]}')
            reply = await recv(prices)
            assert reply["watchlist"] == ["MSFT"]
        async with websockets.connect(f"ws://{base}/ws/news") as news:
            assert (await recv(news))["type"] == "snapshot"
        assert "websocket" not in through_fastapi  # the bypass matched below root_path
        assert "http" in through_fastapi
        assert (hub.flusher.writes > 0) is fast


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "asgi-path"])
async def test_a_server_side_close_reaches_the_client(
    fast: bool, redis_server: Any, aapl_msft: Producer
) -> None:
    """What the slow-client sweep and shutdown do: ``conn.close(code)`` from outside the
    route; the route stops reading and sends the close frame with its reason."""
    async with serving(redis_server.url, fast) as (base, hub):
        async with websockets.connect(f"ws://{base}/ws/prices") as ws:
            await recv(ws)
            [conn] = hub.prices.connections
            conn.close(CloseCode.SLOW_CLIENT)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CloseCode.SLOW_CLIENT
        assert closed.value.rcvd.reason == "slow client: not reading"
        async with asyncio.timeout(WAIT):
            while hub.prices.connections:  # noqa: ASYNC110 (detached once the route returns)
                await asyncio.sleep(0.02)
