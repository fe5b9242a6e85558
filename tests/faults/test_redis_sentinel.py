"""Redis behind Sentinel loses its primary mid-stream: both services follow the failover.

A real primary, replica and three sentinels (``sentinel_cluster``); the poller and
the api find the primary only through the sentinels (their ``REDIS_URL`` points at
a port where nothing listens). SIGKILL the primary: the sentinels promote the
replica, the poller keeps publishing to it, the api resubscribes and reloads, and
every client converges on the new primary's snapshot.

In the planned failover the api's subscription may stay on the demoted node for
a few seconds (Sentinel disconnects its normal clients, not always pub/sub ones);
a replica relays what the new primary publishes, so the stream goes on, and the
api's reads already go to the new primary.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from tickerhub_core.keys import RedisKeys
from tickerhub_core.store import SnapshotStore
from tickerhub_testkit.processes import start_api
from tickerhub_testkit.sentinel import SentinelCluster
from tickerhub_testkit.wait import eventually

from .conftest import TICKERS, Client, converge, get_json, poller_process

pytestmark = pytest.mark.integration

WATCH = ["AAPL", "TSLA"]


async def _seq(redis: Redis) -> int:
    try:
        return int(await redis.get("prices:seq") or 0)
    except Exception:  # a primary that is going away; the next poll will tell
        return 0


@pytest.mark.parametrize("how", ["sigkill", "demoted"])
async def test_primary_lost_mid_stream(
    sentinel_cluster: SentinelCluster, procs: Any, how: str
) -> None:
    """``sigkill``: the primary dies without a word. ``demoted``: a planned failover
    (``SENTINEL FAILOVER``) turns the live primary into a replica, so a client still
    on it is answered READONLY."""
    cluster = sentinel_cluster
    env = cluster.env()
    poller = procs(poller_process(cluster.redis_url, **env))
    api = start_api(procs, cluster.redis_url, **env)
    old_port = cluster.primary_port()
    assert old_port is not None
    old = Redis(port=old_port)
    everything = await Client.connect(f"{api.ws}/ws/prices", name="all")
    watching = await Client.connect(f"{api.ws}/ws/prices", WATCH, name="watchlist")
    clients = [everything, watching]
    new: Redis | None = None
    try:
        await eventually(lambda: set(everything.view.quotes) == set(TICKERS), "all symbols")
        await eventually(lambda: watching.view.diffs >= 3, "diffs for the watchlist")
        seq_before = await _seq(old)
        assert seq_before > 0
        await old.aclose()
        diffs_before = [c.view.diffs for c in clients]

        lost = cluster.kill_primary() if how == "sigkill" else cluster.demote_primary()
        assert lost == old_port
        # In a thread: the clients keep reading the stream meanwhile.
        new_port = await asyncio.to_thread(cluster.wait_failover, old_port)
        new = Redis(port=new_port)

        # The poller writes to the promoted replica, and goes on writing.
        def why() -> str:
            return f"{poller.output()[-4000:]}\n{cluster.logs()}"

        first = await eventually(
            lambda: _above(new, seq_before), "the poller publishing to the new primary", detail=why
        )
        await eventually(
            lambda: _above(new, first), "the seq still rising on the new primary", detail=why
        )
        # The api followed: its clients get diffs again, and it reports ready.
        await eventually(
            lambda: all(c.view.diffs > d for c, d in zip(clients, diffs_before, strict=True)),
            "diffs after the failover",
            detail=lambda: f"{api.output()[-3000:]}\n{cluster.logs()}",
        )
        assert (await get_json(f"{api.http}/readyz"))["redis"] is True

        # Quiet the producer, then every client's merged view is the new primary's
        # snapshot at the same seq (and REST says the same).
        assert poller.stop() == 0, poller.output()
        store = SnapshotStore(new, RedisKeys())

        async def on_new_primary() -> bool:
            snapshot = await store.load_snapshot()
            for client, watch in zip(clients, [None, WATCH], strict=True):
                expected = (
                    snapshot.quotes
                    if watch is None
                    else {s: q for s, q in snapshot.quotes.items() if s in watch}
                )
                if client.view.seq != snapshot.seq or client.view.quotes != expected:
                    return False
            return True

        async def views() -> str:
            snapshot = await store.load_snapshot()
            seen = [(c.view.name, c.view.seq, len(c.view.quotes)) for c in clients]
            return (
                f"new primary at seq {snapshot.seq}, epoch {snapshot.epoch}; clients "
                f"(name, seq, quotes): {seen}\n{api.output()[-3000:]}\n{poller.output()[-3000:]}"
            )

        try:
            await eventually(on_new_primary, "every client on the new primary's snapshot")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{await views()}") from None
        await converge(api, clients, [None, WATCH])
        for client in clients:
            assert client.view.closed is None, client.view.closed
            assert not client.view.seq_went_back, client.view.name
        assert api.alive, api.output()
        assert "Traceback" not in api.output(), api.output()
        assert "Traceback" not in poller.output(), poller.output()
    finally:
        for client in clients:
            await client.close()
        await old.aclose()
        if new is not None:
            await new.aclose()


async def _above(redis: Redis, seq: int) -> int | None:
    """The seq in ``redis`` if it is above ``seq``."""
    now = await _seq(redis)
    return now if now > seq else None
