"""Graceful shutdown: SIGTERM closes WebSocket clients with 1001 and the services exit 0."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
import websockets

from tickerhub_testkit.processes import start_api
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.ws import recv, recv_until

from .conftest import TICKERS, Client, converge, poller_process

pytestmark = pytest.mark.integration

# Generous: the api lets requests finish for 5 s, the poller waits 5 s for its tasks.
EXIT_BOUND = 20.0


async def wait_exit(proc: Any) -> int:
    """Wait for the process to exit on its own (no SIGKILL); fail after EXIT_BOUND."""
    await eventually(
        lambda: proc.proc.poll() is not None,
        "exit after SIGTERM",
        limit=EXIT_BOUND,
        interval=0.05,
        detail=proc.output,
    )
    return proc.proc.returncode


async def test_api_sigterm_closes_clients_with_1001_and_exits_0(
    redis_server: Any, procs: Any
) -> None:
    procs(poller_process(redis_server.url))
    api = start_api(procs, redis_server.url)
    prices = [
        await Client.connect(f"{api.ws}/ws/prices", name="all"),
        await Client.connect(f"{api.ws}/ws/prices", ["AAPL"], name="watchlist"),
    ]
    news = await websockets.connect(f"{api.ws}/ws/news", open_timeout=30)
    try:
        assert (await recv(news))["type"] == "snapshot"
        await eventually(lambda: all(c.view.diffs >= 1 for c in prices), "diffs")
        api.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(api) == 0, api.output()
        await eventually(lambda: all(c.view.closed is not None for c in prices), "closes")
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv_until(news, lambda _: False)
        codes = [c.view.closed.rcvd.code if c.view.closed.rcvd else None for c in prices]
        codes.append(info.value.rcvd.code if info.value.rcvd else None)
        assert codes == [1001, 1001, 1001], codes
        assert "Traceback" not in api.output(), api.output()
    finally:
        for client in prices:
            await client.close()
        await news.close()


async def test_poller_sigterm_exits_0_and_flushes(redis_server: Any, procs: Any) -> None:
    poller = procs(poller_process(redis_server.url))
    api = start_api(procs, redis_server.url)
    client = await Client.connect(f"{api.ws}/ws/prices", name="all")
    try:
        await eventually(lambda: set(client.view.quotes) == set(TICKERS), "data")
        poller.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(poller) == 0, poller.output()
        assert "shutting down" in poller.output()
        assert "Traceback" not in poller.output(), poller.output()
        # Flushed: whatever it wrote before exiting was also published, so a client
        # that merged the stream holds exactly what Redis holds.
        await converge(api, [client], [None])
    finally:
        await client.close()


async def test_poller_sigterm_while_redis_is_down_exits_0(
    own_redis_server: Any, procs: Any
) -> None:
    poller = procs(poller_process(own_redis_server.url))
    await asyncio.sleep(0.5)
    own_redis_server.stop()
    poller.wait_for_output("redis", timeout=30)  # it noticed the outage
    await asyncio.sleep(0.5)
    poller.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(poller) == 0, poller.output()


async def test_api_sigterm_while_redis_is_down_exits_0(own_redis_server: Any, procs: Any) -> None:
    api = start_api(procs, own_redis_server.url)
    client = await Client.connect(f"{api.ws}/ws/prices", name="c")
    try:
        own_redis_server.stop()
        await asyncio.sleep(1.0)
        api.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(api) == 0, api.output()
        await eventually(lambda: client.view.closed is not None, "close")
    finally:
        await client.close()
