"""SIGKILL a poller or an api process: no spurious diffs, rising sequence, unaffected clients."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from tickerhub_testkit.processes import start_api
from tickerhub_testkit.wait import eventually

from .conftest import TICKERS, Client, converge, poller_process

pytestmark = pytest.mark.integration

WATCH = ["MSFT", "TSLA"]


async def drain(pubsub: Any, seconds: float) -> list[dict[str, Any]]:
    messages = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            messages.append(orjson.loads(message["data"]))
    return messages


async def test_poller_sigkill_flat_source_publishes_nothing_after_restart(
    redis_server: Any, procs: Any, tmp_path: Path
) -> None:
    redis = Redis.from_url(redis_server.url)
    poller = procs(poller_process(redis_server.url, SIM_VOLATILITY="0"))
    api = start_api(procs, redis_server.url)
    client = await Client.connect(f"{api.ws}/ws/prices", name="all")
    pubsub = redis.pubsub()
    try:
        await eventually(lambda: set(client.view.quotes) == set(TICKERS), "the first diff")
        assert await redis.get("prices:seq") == b"1"
        poller.stop(signal.SIGKILL)
        before = await redis.hgetall("prices")
        frames = len(client.view.messages)
        await pubsub.subscribe("price-diffs")
        beat = tmp_path / "beat"
        restarted = procs(
            poller_process(redis_server.url, SIM_VOLATILITY="0", HEARTBEAT_FILE=str(beat))
        )
        restarted.wait_for_output("loaded snapshot at seq 1")
        restarted.wait_for_output("polling")
        window = time.time()
        published = await drain(pubsub, 1.5)  # ~30 poll cycles of a flat source
        assert published == [], published
        # The publisher did run on fresh quotes in that window (it touches the heartbeat
        # file after each flush), so "nothing published" is a finding, not a poller that
        # had not started yet.
        assert beat.stat().st_mtime >= window
        assert await redis.get("prices:seq") == b"1"
        assert await redis.hgetall("prices") == before
        assert client.view.messages[frames:] == []  # not a diff, not a snapshot
        await converge(api, [client], [None])
        assert restarted.proc.poll() is None, restarted.output()
    finally:
        await client.close()
        await pubsub.aclose()
        await redis.aclose()


async def test_poller_sigkill_sequence_keeps_rising_and_clients_converge(
    redis_server: Any, procs: Any
) -> None:
    redis = Redis.from_url(redis_server.url)
    poller = procs(poller_process(redis_server.url))
    api = start_api(procs, redis_server.url)
    everything = await Client.connect(f"{api.ws}/ws/prices", name="all")
    watching = await Client.connect(f"{api.ws}/ws/prices", WATCH, name="watchlist")
    clients = [everything, watching]
    try:
        await eventually(lambda: (everything.view.seq or 0) >= 5, "some diffs")
        poller.stop(signal.SIGKILL)
        await asyncio.sleep(0.3)  # whatever was in flight has arrived
        seq_at_kill = int(await redis.get("prices:seq"))
        restarted = procs(poller_process(redis_server.url))
        await eventually(
            lambda: everything.view.seq >= seq_at_kill + 5 and watching.view.seq > seq_at_kill,
            "diffs from the restarted poller",
        )
        assert restarted.stop() == 0, restarted.output()
        for client in clients:
            seqs = [
                m["seq"]
                for m in client.view.messages
                if isinstance(m, dict) and m.get("type") in ("diff", "snapshot")
            ]
            assert seqs == sorted(seqs), f"{client.view.name}: seq went back: {seqs}"
            assert not client.view.seq_went_back
        # The all-symbols client saw every diff: seq rises by exactly one each time.
        diff_seqs = [
            m["seq"]
            for m in everything.view.messages
            if isinstance(m, dict) and m.get("type") == "diff"
        ]
        assert diff_seqs == list(range(diff_seqs[0], diff_seqs[0] + len(diff_seqs)))
        # The restarted poller went on from the stored seq: its first diff is the next one.
        assert seq_at_kill + 1 in diff_seqs, (seq_at_kill, diff_seqs)
        assert int(await redis.get("prices:seq")) > seq_at_kill
        await converge(api, clients, [None, WATCH])
    finally:
        for client in clients:
            await client.close()
        await redis.aclose()


async def test_api_sigkill_leaves_the_other_process_clients_alone(
    redis_server: Any, procs: Any
) -> None:
    poller = procs(poller_process(redis_server.url))
    doomed = start_api(procs, redis_server.url)
    survivor = start_api(procs, redis_server.url)
    victim = await Client.connect(f"{doomed.ws}/ws/prices", name="on the killed api")
    others = [
        await Client.connect(f"{survivor.ws}/ws/prices", name="survivor all"),
        await Client.connect(f"{survivor.ws}/ws/prices", WATCH, name="survivor watchlist"),
    ]
    reconnected: Client | None = None
    try:
        await eventually(lambda: all(c.view.diffs >= 3 for c in [victim, *others]), "diffs")
        doomed.stop(signal.SIGKILL)
        await eventually(lambda: victim.view.closed is not None, "the victim's connection drops")
        counts = [c.view.diffs for c in others]
        await eventually(
            lambda: all(c.view.diffs >= n + 10 for c, n in zip(others, counts, strict=True)),
            "the survivor's clients keep receiving diffs",
        )
        for client in others:
            assert client.view.closed is None
            await client.ping()
        # The killed api's client reconnects to the survivor: a full snapshot first.
        reconnected = await Client.connect(f"{survivor.ws}/ws/prices", name="reconnected")
        await eventually(lambda: reconnected.view.snapshots >= 1, "snapshot on reconnect")
        first = reconnected.view.messages[0]
        assert first["type"] == "snapshot"
        assert not first.get("partial")
        assert set(first["data"]) == set(TICKERS)
        assert poller.stop() == 0
        await converge(survivor, [*others, reconnected], [None, WATCH, None])
    finally:
        for client in [victim, *others, *([reconnected] if reconnected else [])]:
            await client.close()


async def test_reconnect_to_a_restarted_api_gets_a_full_snapshot(
    redis_server: Any, procs: Any
) -> None:
    """The same port, a new process: a watchlist client starts over and converges."""
    procs(poller_process(redis_server.url))
    api = start_api(procs, redis_server.url)
    client = await Client.connect(f"{api.ws}/ws/prices", WATCH, name="first")
    await eventually(lambda: client.view.diffs >= 3, "diffs")
    api.stop(signal.SIGKILL)
    await eventually(lambda: client.view.closed is not None, "connection dropped")
    await client.close()
    api.start()
    api.wait_ready()
    second = await Client.connect(f"{api.ws}/ws/prices", name="second")
    try:
        await eventually(lambda: second.view.snapshots >= 1, "snapshot")
        snapshot = second.view.messages[0]
        assert set(snapshot["data"]) == set(TICKERS)
        await second.ws.send(orjson.dumps({"watchlist": WATCH}).decode())
        reply = await recv_reply(second)
        assert set(reply["data"]) == set(WATCH)
    finally:
        await second.close()


async def recv_reply(client: Client) -> dict[str, Any]:
    def reply() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in client.view.messages
                if isinstance(m, dict) and m.get("watchlist") is not None
            ),
            None,
        )

    return await eventually(reply, "watchlist reply")
