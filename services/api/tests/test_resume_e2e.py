"""Resume (seq + epoch) and max_rate against the real thing: redis-server, api
subprocesses, and a producer (the testkit's, for exact expectations, or the
simulated poller). Timeouts only keep a broken build from hanging."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import httpx
import orjson
import pytest
import websockets
from redis.asyncio import Redis

from tickerhub_client import Diff, Message, PricesClient, Reconnecting, Snapshot
from tickerhub_client.backoff import Backoff
from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_core.store import NewsStore
from tickerhub_testkit.processes import ApiProcess, Procs, poller_process, start_api
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.wait import WAIT, eventually
from tickerhub_testkit.ws import recv, recv_until

pytestmark = pytest.mark.integration

SYMBOLS = ("AAPL", "MSFT", "TSLA", "GOOG")


async def rest(api: ApiProcess, path: str = "/tickers") -> httpx.Response:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{api.http}{path}")
        response.raise_for_status()
        return response


async def first_snapshot(api: ApiProcess, query: str = "") -> dict[str, Any]:
    async with websockets.connect(f"{api.ws}/ws/prices{query}") as ws:
        return await recv_until(ws, lambda m: isinstance(m, dict) and m["type"] == "snapshot")


async def caught_up(api: ApiProcess, seq: int) -> None:
    async def at() -> bool:
        return int((await rest(api)).headers["X-TickerHub-Seq"]) >= seq

    await eventually(at, f"the api at seq {seq}")


async def test_rest_and_snapshots_carry_the_epoch(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url)
    response = await rest(api)
    epoch = response.headers["X-TickerHub-Epoch"]
    assert epoch == (await four_tickers.store.load_snapshot()).epoch
    one = await rest(api, "/tickers/aapl")
    assert (one.headers["X-TickerHub-Epoch"], one.headers["X-TickerHub-Seq"]) == (epoch, "1")
    snapshot = await first_snapshot(api)
    assert (snapshot["seq"], snapshot["epoch"]) == (1, epoch)


async def test_resume_returns_exactly_the_symbols_that_changed(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url)
    start = await first_snapshot(api, "?symbols=AAPL,MSFT,TSLA")
    assert start["watchlist"] == ["AAPL", "MSFT", "TSLA"]
    seq, epoch = start["seq"], start["epoch"]
    # While the client is away: MSFT and GOOG change, then TSLA (GOOG is not watched).
    await four_tickers.publish({"MSFT": {"price": 101.0}, "GOOG": {"price": 7.0}})
    last = await four_tickers.publish({"TSLA": {"volume": 5}})
    await caught_up(api, last)
    answer = await first_snapshot(api, f"?since={seq}&epoch={epoch}&symbols=AAPL,MSFT,TSLA")
    assert answer["resumed"] is True
    assert answer["partial"] is True
    assert (answer["seq"], answer["epoch"]) == (last, epoch)
    assert "watchlist" not in answer  # no echo: bytes matter in a reconnect storm
    assert "unknown" not in answer
    assert answer["data"] == {s: four_tickers.quotes[s] for s in ("MSFT", "TSLA")}
    # The message form, on an open connection, says the same.
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await recv(ws)
        resume = {"resume": {"seq": seq, "epoch": epoch}, "watchlist": ["AAPL", "MSFT", "TSLA"]}
        await ws.send(orjson.dumps(resume).decode())
        again = await recv(ws)
    assert again["resumed"] is True
    assert again["data"] == answer["data"]


async def test_resume_with_fields_changed_sends_only_the_changed_fields(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url)
    start = await first_snapshot(api, "?symbols=AAPL,MSFT,TSLA")
    seq, epoch = start["seq"], start["epoch"]
    await four_tickers.publish({"MSFT": {"price": 101.0}, "GOOG": {"price": 7.0}})
    await four_tickers.publish({"TSLA": {"volume": 5}, "MSFT": {"change": 1.5}})
    last = await four_tickers.publish({"MSFT": {"price": 102.0}})
    await caught_up(api, last)
    query = f"?since={seq}&epoch={epoch}&symbols=AAPL,MSFT,TSLA&fields=changed"
    answer = await first_snapshot(api, query)
    assert (answer["resumed"], answer["partial"], answer["seq"]) == (True, True, last)
    # ``stale`` always comes along: an api before a restart may have forced it true.
    expected = {
        "MSFT": {"symbol": "MSFT", "seq": last, "stale": False, "price": 102.0, "change": 1.5},
        "TSLA": {"symbol": "TSLA", "seq": last - 1, "stale": False, "volume": 5},
    }
    assert answer["data"] == expected
    # Merged into the view the client held at ``seq``, it is the state REST serves.
    view = {s: {**start["data"][s], **answer["data"].get(s, {})} for s in start["data"]}
    assert view == {s: (await rest(api)).json()[s] for s in ("AAPL", "MSFT", "TSLA")}
    # A restarted api reads the field record from Redis: the same answer, also to the
    # message form; from a point after MSFT's price change only the change is sent.
    api.kill()
    again = start_api(procs, redis_server.url, PORT=str(api.port))
    async with websockets.connect(f"{again.ws}/ws/prices") as ws:
        await recv(ws)
        for since, data in (
            (seq, expected),
            (last - 1, {"MSFT": {"symbol": "MSFT", "seq": last, "stale": False, "price": 102.0}}),
        ):
            resume = {"resume": {"seq": since, "epoch": epoch, "fields": "changed"}}
            await ws.send(orjson.dumps({**resume, "watchlist": ["AAPL", "MSFT", "TSLA"]}).decode())
            reply = await recv(ws)
            assert (reply["resumed"], reply["data"]) == (True, data)
    # Without the option the quotes come whole, as before.
    whole = await first_snapshot(again, f"?since={seq}&epoch={epoch}&symbols=AAPL,MSFT,TSLA")
    assert whole["data"] == {s: four_tickers.quotes[s] for s in ("MSFT", "TSLA")}


async def test_a_second_api_process_answers_a_resume_made_against_the_first(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    first, second = start_api(procs, redis_server.url), start_api(procs, redis_server.url)
    start = await first_snapshot(first, "?symbols=AAPL,GOOG")
    last = await four_tickers.publish({"GOOG": {"price": 3.0}, "MSFT": {"price": 1.0}})
    await caught_up(second, last)
    answer = await first_snapshot(
        second, f"?since={start['seq']}&epoch={start['epoch']}&symbols=AAPL,GOOG"
    )
    assert answer["resumed"] is True
    assert answer["data"] == {"GOOG": four_tickers.quotes["GOOG"]}


async def test_producer_reset_changes_the_epoch_and_refuses_the_resume(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url)
    start = await first_snapshot(api)
    quotes = {s: wire.dumps(q) for s, q in four_tickers.quotes.items()}
    await four_tickers.store.reset(start["seq"] + 1, quotes)

    async def new_epoch() -> bool:
        return (await rest(api)).headers["X-TickerHub-Epoch"] != start["epoch"]

    await eventually(new_epoch, "the api to adopt the reset's epoch")
    answer = await first_snapshot(api, f"?since={start['seq']}&epoch={start['epoch']}")
    assert (answer["resumed"], answer["reason"]) == (False, "epoch_changed")
    assert "partial" not in answer
    assert answer["data"] == four_tickers.quotes
    assert answer["epoch"] != start["epoch"]
    # A client ahead of the hub (it followed another hub?) gets everything too.
    ahead = await first_snapshot(api, f"?since={answer['seq'] + 5}&epoch={answer['epoch']}")
    assert (ahead["resumed"], ahead["reason"]) == (False, "seq_ahead")


async def test_redis_restarted_empty_then_the_poller_restores_it_means_a_new_epoch(
    own_redis_server: Any, procs: Procs
) -> None:
    url = own_redis_server.url
    procs(poller_process(url, SYMBOLS))
    api = start_api(procs, url)
    start = await first_snapshot(api)
    own_redis_server.restart()  # no persistence: Redis comes back empty

    async def restored() -> bool:
        # Ready first: until then REST reads Redis, which may be ahead of the api's copy.
        async with httpx.AsyncClient() as http:
            if (await http.get(f"{api.http}/readyz")).status_code != 200:
                return False
            response = await http.get(f"{api.http}/tickers")
        return response.headers["X-TickerHub-Epoch"] != start["epoch"] and len(response.json()) == 4

    await eventually(restored, "the poller to write its snapshot back, under a new epoch")
    answer = await first_snapshot(api, f"?since={start['seq']}&epoch={start['epoch']}")
    assert (answer["resumed"], answer["reason"]) == (False, "epoch_changed")
    assert set(answer["data"]) == set(SYMBOLS)


async def test_bad_resume_values_get_bad_value_and_the_connection_stays(
    redis_server: Any, four_tickers: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url)
    async with websockets.connect(f"{api.ws}/ws/prices?since=-3&epoch=x&max_rate=0") as ws:
        codes = [(await recv(ws))["code"], (await recv(ws))["code"]]
        assert codes == ["bad_value", "bad_value"]
        snapshot = await recv(ws)
        assert set(snapshot["data"]) == set(SYMBOLS)
        for bad in ('{"max_rate": 1000}', '{"resume": {"seq": 1}}', '{"max_rate": "1"}'):
            await ws.send(bad)
            error = await recv(ws)
            assert (error["type"], error["code"]) == ("error", "bad_value")
        await ws.send("ping")
        assert await recv(ws) == "pong"


async def test_client_resumes_across_an_api_kill_and_restart(
    redis_server: Any, procs: Procs
) -> None:
    poller = procs(poller_process(redis_server.url, SYMBOLS))
    api = start_api(procs, redis_server.url)
    client = PricesClient(
        api.ws, symbols=["AAPL", "TSLA"], backoff=Backoff(initial=0.1, factor=2, maximum=1.0)
    )
    events: list[Any] = []

    async def run() -> None:
        async for event in client:
            events.append(event)

    task = asyncio.create_task(run())
    try:
        await eventually(lambda: sum(isinstance(e, Diff) for e in events) >= 5, "diffs")
        api.kill()
        await eventually(lambda: any(isinstance(e, Reconnecting) for e in events), "reconnect")
        again = start_api(procs, redis_server.url, PORT=str(api.port))
        snapshots = lambda: [e for e in events if isinstance(e, Snapshot)]  # noqa: E731
        await eventually(lambda: len(snapshots()) >= 2, "the snapshot after the restart")
        resumed = snapshots()[-1]
        assert resumed.resumed is True, resumed.raw
        assert resumed.partial is True
        assert poller.stop() == 0
        expected = (await rest(again)).json()

        def converged() -> bool:
            return dict(client.quotes) == {s: expected[s] for s in ("AAPL", "TSLA")}

        await eventually(converged, "the client's view equal to GET /tickers")
    finally:
        await client.close()
        await asyncio.wait_for(task, WAIT)


async def test_max_rate_one_paces_every_client_and_ends_equal_to_rest(
    redis_server: Any, procs: Procs
) -> None:
    poller = procs(poller_process(redis_server.url, SYMBOLS))
    api = start_api(procs, redis_server.url)
    clients = [PricesClient(api.ws, symbols=list(SYMBOLS), max_rate=1) for _ in range(3)]
    diffs: list[list[float]] = [[] for _ in clients]
    answers: list[Any] = []

    async def run(n: int, client: PricesClient) -> None:
        async for event in client:
            if isinstance(event, Diff):
                diffs[n].append(time.monotonic())
            elif isinstance(event, Message) and event.type == "max_rate":
                answers.append(event.raw)

    tasks = [asyncio.create_task(run(n, c)) for n, c in enumerate(clients)]
    try:
        await eventually(lambda: all(len(d) >= 2 for d in diffs), "paced diffs")
        window_start = time.monotonic()
        await asyncio.sleep(4.0)
        window_end = time.monotonic()
        assert poller.stop() == 0
        for times in diffs:
            inside = [t for t in times if window_start <= t <= window_end]
            # <= 1 a second (+1 for where the window falls); the poller publishes ~20/s.
            assert 1 <= len(inside) <= 5, inside
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert min(gaps) > 0.5, gaps  # 1 s apart when sent; receive-side jitter only
        assert answers == [{"type": "max_rate", "max_rate": 1.0}] * 3
        expected = (await rest(api)).json()

        def all_equal() -> bool:
            return all(dict(c.quotes) == expected for c in clients)

        await eventually(all_equal, "every client's final state = REST")
    finally:
        for client in clients:
            await client.close()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)


async def test_news_resume_sends_the_items_after_the_clients_newest(
    redis_server: Any, redis: Redis, procs: Procs
) -> None:
    store = NewsStore(redis, RedisKeys())

    def item(i: int, *tickers: str) -> Any:
        return {
            "id": f"n{i}",
            "title": f"t{i}",
            "publisher": None,
            "link": None,
            "published_at": f"2026-01-{i:02d}T00:00:00Z",
            "tickers": list(tickers),
        }

    await store.add([item(1, "AAPL"), item(2, "MSFT"), item(3, "AAPL")], 50)
    api = start_api(procs, redis_server.url)
    await store.add([item(4, "AAPL"), item(5, "MSFT"), item(6, "AAPL", "TSLA")], 50)
    async with websockets.connect(f"{api.ws}/ws/news?since=n3&symbols=AAPL") as ws:
        answer = await recv(ws)
    assert (answer["partial"], answer["resumed"]) == (True, True)
    assert [i["id"] for i in answer["data"]] == ["n6", "n4"]
    assert answer["watchlist"] == ["AAPL"]
    async with websockets.connect(f"{api.ws}/ws/news") as ws:
        await recv(ws)
        await ws.send('{"resume": {"id": "gone"}}')
        refused = await recv(ws)
        assert (refused["resumed"], refused["reason"]) == (False, "unknown_id")
        assert [i["id"] for i in refused["data"]][:2] == ["n6", "n5"]
        await ws.send('{"resume": {"seq": 1, "epoch": "e"}}')
        error = await recv(ws)
        assert (error["type"], error["code"]) == ("error", "bad_value")
