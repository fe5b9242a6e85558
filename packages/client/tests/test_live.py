"""The client against the real thing: redis-server, the simulated poller and the api as
subprocesses (testkit). Timeouts only keep a broken build from hanging."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tickerhub_client import (
    Backoff,
    Closed,
    Connected,
    ConnectionRejected,
    Diff,
    Event,
    News,
    NewsClient,
    NewsSnapshot,
    PricesClient,
    Reconnecting,
    Snapshot,
)
from tickerhub_core.keys import RedisKeys
from tickerhub_core.store import NewsStore
from tickerhub_testkit.processes import ApiProcess, Procs, ServiceProcess, poller_process, start_api
from tickerhub_testkit.producer import news_item
from tickerhub_testkit.wait import WAIT, eventually

from .conftest import KEY

pytestmark = pytest.mark.integration

FAST = Backoff(initial=0.1, factor=2, maximum=1.0)
TICKERS = ("AAPL", "MSFT", "GOOG", "TSLA")


def start_poller(procs: Procs, redis_url: str) -> ServiceProcess:
    """The simulated poller on ``TICKERS`` (stopped with the test)."""
    return procs(poller_process(redis_url, TICKERS))


class Follower:
    """Iterates a client in a task, keeping every event."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for event in self.client:
                self.events.append(event)
        except Exception as exc:
            self.error = exc

    def count(self, kind: type) -> int:
        return sum(isinstance(e, kind) for e in self.events)

    async def stop(self) -> None:
        await self.client.close()
        await asyncio.wait_for(self.task, WAIT)


@contextlib.asynccontextmanager
async def following(client: Any) -> AsyncIterator[Follower]:
    follower = Follower(client)
    try:
        yield follower
    finally:
        await follower.stop()


async def tickers(api: ApiProcess, **headers: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{api.http}/tickers", headers=headers)
        response.raise_for_status()
        return response.json()


async def converge(client: PricesClient, api: ApiProcess, symbols: list[str]) -> None:
    """Until the client's view equals ``GET /tickers`` for ``symbols`` (the source stopped)."""
    deadline = time.monotonic() + WAIT
    while True:
        rest = await tickers(api)
        expected = {s: rest[s] for s in symbols}
        if dict(client.quotes) == expected:
            return
        assert time.monotonic() < deadline, f"no convergence:\n{client.quotes}\n{expected}"
        await asyncio.sleep(0.1)


async def test_view_converges_to_rest(redis_server: Any, procs: Procs) -> None:
    poller = start_poller(procs, redis_server.url)
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING")
    client = PricesClient(api.ws, symbols=["aapl", "MSFT"], backoff=FAST)
    async with following(client) as follower:
        await eventually(lambda: follower.count(Diff) >= 10, "diffs from the poller")
        assert poller.stop() == 0
        await converge(client, api, ["AAPL", "MSFT"])
        # The server took the watchlist from ?symbols= and said so in the first snapshot.
        assert client.view.watchlist == ["AAPL", "MSFT"]
        assert client.symbols == ["AAPL", "MSFT"]
        updates = [e for e in follower.events if isinstance(e, Snapshot | Diff)]
        assert isinstance(updates[0], Snapshot)
        assert updates[0].watchlist == ["AAPL", "MSFT"]
        assert updates[0].epoch is not None
        assert set(updates[0].data) == {"AAPL", "MSFT"}
        assert all(set(e.data) <= {"AAPL", "MSFT"} for e in updates)
        assert follower.error is None
    assert isinstance(follower.events[-1], Closed)


async def test_watchlist_changes_while_connected(redis_server: Any, procs: Procs) -> None:
    poller = start_poller(procs, redis_server.url)
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING")
    client = PricesClient(api.ws, symbols=["AAPL"], backoff=FAST)
    async with following(client) as follower:
        await eventually(lambda: client.view.watchlist == ["AAPL"], "watchlist reply")
        await client.subscribe(["tsla", "goog"])
        await eventually(lambda: set(client.quotes) == {"AAPL", "GOOG", "TSLA"}, "subscribe")
        await client.unsubscribe(["AAPL"])
        await eventually(lambda: set(client.quotes) == {"GOOG", "TSLA"}, "unsubscribe")
        assert client.symbols == ["GOOG", "TSLA"]
        await client.set_watchlist(["MSFT"])
        await eventually(lambda: set(client.quotes) == {"MSFT"}, "new watchlist")
        assert poller.stop() == 0
        await converge(client, api, ["MSFT"])
        assert follower.error is None


async def test_reconnects_after_the_api_is_killed_and_restarted(
    redis_server: Any, procs: Procs
) -> None:
    poller = start_poller(procs, redis_server.url)
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING")
    client = PricesClient(api.ws, symbols=["AAPL", "TSLA"], backoff=FAST)
    async with following(client) as follower:
        await eventually(lambda: follower.count(Diff) >= 5, "diffs before the kill")
        api.kill()
        await eventually(lambda: follower.count(Reconnecting) >= 2, "reconnect attempts")
        before = follower.count(Diff)
        assert follower.count(Connected) == 1
        again = start_api(procs, redis_server.url, LOG_LEVEL="WARNING", PORT=str(api.port))
        await eventually(lambda: follower.count(Connected) == 2, "the second connection")
        await eventually(lambda: follower.count(Diff) >= before + 5, "diffs after the restart")
        poller.stop()  # let the state settle
        await converge(client, again, ["AAPL", "TSLA"])
        reconnecting = [e for e in follower.events if isinstance(e, Reconnecting)]
        assert reconnecting[0].code == 1006  # killed: no close frame
        delays = [e.delay for e in reconnecting]
        assert all(0 < d <= FAST.maximum for d in delays)
        assert follower.error is None


@pytest.mark.parametrize("auth", ["header", "message"])
async def test_bad_key_raises_once_and_does_not_retry(
    redis_server: Any, procs: Procs, auth: str
) -> None:
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING", API_KEYS=KEY)
    client = PricesClient(api.ws, symbols=["AAPL"], api_key="wrong-key-but-long-enough", auth=auth)
    events: list[Event] = []

    async def run() -> None:
        async with client:
            async for event in client:
                events.append(event)

    with pytest.raises(ConnectionRejected) as info:
        await run()
    assert info.value.code == 1008
    assert "invalid API key" in info.value.reason
    assert [type(e) for e in events] == [Connected]  # one attempt, no retry storm


@pytest.mark.parametrize("auth", ["header", "message"])
async def test_good_key_gets_the_stream(redis_server: Any, procs: Procs, auth: str) -> None:
    start_poller(procs, redis_server.url)
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING", API_KEYS=KEY)
    client = PricesClient(api.ws, symbols=["MSFT"], api_key=KEY, auth=auth)
    async with following(client) as follower:
        await eventually(lambda: client.view.watchlist == ["MSFT"], "watchlist reply")
        await eventually(lambda: follower.count(Diff) >= 1, "a diff")
        assert set(client.quotes) == {"MSFT"}
        assert follower.error is None


async def test_news_stream(redis_server: Any, procs: Procs) -> None:
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING")
    redis = Redis.from_url(redis_server.url)
    store = NewsStore(redis, RedisKeys())

    try:
        await store.add([news_item(1, "AAPL"), news_item(2, "MSFT")], 50)
        client = NewsClient(api.ws, symbols=["aapl"])
        async with following(client) as follower:
            await eventually(lambda: client.view.watchlist == ["AAPL"], "watchlist reply")
            assert [i["id"] for i in client.items] == ["id1"]
            await store.add([news_item(3, "MSFT"), news_item(4, "AAPL", "TSLA")], 50)
            await eventually(lambda: follower.count(News) == 1, "news")
            assert [i["id"] for i in client.items] == ["id4", "id1"]
            snapshots = [e for e in follower.events if isinstance(e, NewsSnapshot)]
            # One, on connect: the server took the watchlist from ?symbols=.
            assert [[i["id"] for i in e.items] for e in snapshots] == [["id1"]]
            assert [e.watchlist for e in snapshots] == [["AAPL"]]
    finally:
        await redis.aclose()


async def test_full_api_is_retried_not_fatal(redis_server: Any, procs: Procs) -> None:
    """1013 (the process is full) means later: the client backs off and gets in."""
    start_poller(procs, redis_server.url)
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING", WS_MAX_CONNECTIONS="1")
    first = PricesClient(api.ws, symbols=["AAPL"], backoff=FAST)
    second = PricesClient(api.ws, symbols=["MSFT"], backoff=FAST)
    async with following(first) as one:
        await eventually(lambda: first.view.watchlist == ["AAPL"], "the first client in")
        async with following(second) as two:
            await eventually(lambda: two.count(Reconnecting) >= 2, "the second one refused")
            refused = [e for e in two.events if isinstance(e, Reconnecting)]
            assert {e.code for e in refused} == {1013}
            assert second.quotes == {}
            await first.close()
            await eventually(lambda: second.view.watchlist == ["MSFT"], "the second client in")
            assert set(second.quotes) == {"MSFT"}
            assert two.error is None
        assert one.error is None
