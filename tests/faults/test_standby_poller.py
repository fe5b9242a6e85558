"""Two pollers, one lease: kill or freeze the leader, the standby takes over cleanly.

Every diff on ``price-diffs`` is checked against a replica of Redis's snapshot
(loaded in one transaction after subscribing, then advanced diff by diff): its
seq is exactly the next one, and every field it carries differs from the
replica's value. A diff published twice, or computed against anything but
Redis's snapshot (a standby's stale copy, a frozen leader's pending quotes),
breaks one of the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from tickerhub_testkit.metrics import scrape
from tickerhub_testkit.net import free_port
from tickerhub_testkit.processes import ServiceProcess, start_api
from tickerhub_testkit.wait import eventually

from .conftest import TICKERS, Client, converge, poller_process

pytestmark = pytest.mark.integration

LEASE_TTL = 1.0
# Takeover is bounded by 2 x LEASE_TTL (the lease lapses, the standby's next try);
# the slack only absorbs a loaded machine's scheduling and the new leader's first
# poll, and is far below what a broken standby shows (never, or the 30 s heartbeat).
TAKEOVER_SLACK = 4.0


class Replica:
    """Redis's snapshot as the diffs build it; records every rule a diff breaks."""

    def __init__(self) -> None:
        self.seq = 0
        self.quotes: dict[str, dict[str, Any]] = {}
        self.diffs: list[dict[str, Any]] = []
        self.broken: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self, redis: Redis) -> None:
        pubsub = redis.pubsub()
        await pubsub.subscribe("price-diffs")
        while (await pubsub.get_message(timeout=5)) is None:  # the subscribe confirmation
            pass
        async with redis.pipeline(transaction=True) as pipe:
            pipe.get("prices:seq")
            pipe.hgetall("prices")
            raw_seq, raw = await pipe.execute()
        self.seq = int(raw_seq or 0)
        self.quotes = {k.decode(): orjson.loads(v) for k, v in raw.items()}
        self.task = asyncio.create_task(self._follow(pubsub))

    async def _follow(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    self.apply(orjson.loads(message["data"]))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def apply(self, message: dict[str, Any]) -> None:
        if message.get("type") != "diff":
            self.broken.append(f"not a diff: {message}")
            return
        seq = message["seq"]
        if seq <= self.seq:
            return  # published before the replica loaded
        if seq != self.seq + 1:
            self.broken.append(f"seq {seq} after {self.seq}")
        for symbol, fields in message["data"].items():
            quote = self.quotes.setdefault(symbol, {})
            for field, value in fields.items():
                if field not in ("symbol", "seq") and field in quote and quote[field] == value:
                    self.broken.append(f"seq {seq}: {symbol}.{field} unchanged ({value!r})")
            quote.update(fields)
        self.seq = seq
        self.diffs.append(message)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def standby_poller(redis_url: str, lease_ttl: float = LEASE_TTL) -> ServiceProcess:
    return poller_process(redis_url, LEASE_TTL=str(lease_ttl), METRICS_PORT=str(free_port()))


def metrics(poller: ServiceProcess) -> Any:
    return scrape(f"http://127.0.0.1:{poller.env['METRICS_PORT']}/metrics")


def source_requests(poller: ServiceProcess) -> float:
    return metrics(poller).sum("tickerhub_poller_source_requests_total")


async def redis_seq(redis: Redis) -> int:
    return int(await redis.get("prices:seq") or 0)


async def wait_metrics(poller: ServiceProcess) -> None:
    def up() -> bool:
        try:
            metrics(poller)
        except Exception:
            return False
        return True

    await eventually(up, "poller metrics", detail=poller.output)


async def test_sigkill_then_sigstop_the_leader_the_standby_takes_over_cleanly(
    redis_server: Any, procs: Any
) -> None:
    redis = Redis.from_url(redis_server.url)
    replica = Replica()
    first = procs(standby_poller(redis_server.url))
    first.wait_for_output("took the lease")
    second = procs(standby_poller(redis_server.url))
    second.wait_for_output("standby: another poller holds the lease")
    api = start_api(procs, redis_server.url)
    client = await Client.connect(f"{api.ws}/ws/prices", name="all")
    try:
        await replica.start(redis)
        await eventually(lambda: len(replica.diffs) >= 10, "diffs from the first leader")
        await wait_metrics(first)
        await wait_metrics(second)
        # Only the leader calls the source; the standby follows Redis.
        assert metrics(first)["tickerhub_poller_leader"] == 1
        assert metrics(second)["tickerhub_poller_leader"] == 0
        assert source_requests(first) > 0
        assert source_requests(second) == 0

        # -- SIGKILL the leader ---------------------------------------------------
        first.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        seq_at_kill = await redis_seq(redis)  # nobody writes until the standby leads
        snapshot_at_kill = {
            k.decode(): orjson.loads(v) for k, v in (await redis.hgetall("prices")).items()
        }
        await eventually(
            lambda: replica.seq > seq_at_kill, "the standby publishing", detail=second.output
        )
        takeover = time.monotonic() - killed_at
        print(f"\nstandby took over and published {takeover:.2f} s after SIGKILL")
        assert takeover < 2 * LEASE_TTL + TAKEOVER_SLACK
        # Its first diff is the next seq, relative to what Redis held at the kill.
        first_diff = next(d for d in replica.diffs if d["seq"] > seq_at_kill)
        assert first_diff["seq"] == seq_at_kill + 1
        for symbol, fields in first_diff["data"].items():
            for field, value in fields.items():
                if field not in ("symbol", "seq"):
                    assert snapshot_at_kill[symbol][field] != value, (symbol, field)
        assert metrics(second)["tickerhub_poller_leader"] == 1
        assert source_requests(second) > 0

        # -- SIGSTOP the new leader past its lease, then SIGCONT ---------------------
        third = procs(standby_poller(redis_server.url))
        third.wait_for_output("standby: another poller holds the lease")
        await wait_metrics(third)
        assert source_requests(third) == 0
        assert second.proc is not None
        second.proc.send_signal(signal.SIGSTOP)
        try:
            seq_at_stop = await redis_seq(redis)
            third.wait_for_output("took the lease", timeout=30)
            await eventually(lambda: replica.seq >= seq_at_stop + 10, "the third publishing")
        finally:
            second.proc.send_signal(signal.SIGCONT)
        second.wait_for_output("lost the lease")
        await asyncio.sleep(3 * LEASE_TTL)  # room for a deposed leader to misbehave
        after = metrics(second)
        assert after["tickerhub_poller_leader"] == 0
        # It never even tried to publish: a try would have met the compare-and-set.
        assert after["tickerhub_poller_publish_conflicts_total"] == 0
        assert "ahead of our" not in second.output()
        assert metrics(third)["tickerhub_poller_leader"] == 1

        # -- the deposed one leads again: SIGKILL the third ---------------------------
        # (Its batcher was closed when it was deposed: it must poll through it again.)
        third.stop(signal.SIGKILL)
        seq_at_kill = await redis_seq(redis)
        await eventually(
            lambda: replica.seq >= seq_at_kill + 10,
            "the once-deposed poller publishing again",
            detail=second.output,
        )
        assert metrics(second)["tickerhub_poller_leader"] == 1

        # -- quiet, then compare ------------------------------------------------------
        assert second.stop() == 0, second.output()
        await asyncio.sleep(0.5)
        assert replica.broken == [], replica.broken[:10]
        stored = {k.decode(): orjson.loads(v) for k, v in (await redis.hgetall("prices")).items()}
        assert await redis_seq(redis) == replica.seq
        assert stored == replica.quotes
        # The client saw every diff, in order, and never needed a new snapshot.
        seqs = [m["seq"] for m in client.view.messages if isinstance(m, dict) and "seq" in m]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert client.view.snapshots == 1
        await converge(api, [client], [None])
    finally:
        await replica.stop()
        await client.close()
        await redis.aclose()


# The poller's heartbeat TTL (tickerhub_poller.publisher.HEARTBEAT_TTL), plus the
# api's one-second look and a loaded machine's slack.
HEARTBEAT_GONE_WITHIN = 30.0 + 15.0


async def test_no_producer_alive_every_quote_is_served_stale_until_one_is_back(
    redis_server: Any, procs: Any
) -> None:
    from .conftest import get_json

    poller = procs(standby_poller(redis_server.url))
    api = start_api(procs, redis_server.url)
    everything = await Client.connect(f"{api.ws}/ws/prices", name="all")
    watching = await Client.connect(f"{api.ws}/ws/prices", ["MSFT"], name="MSFT")
    clients = [everything, watching]

    def all_stale(client: Client, stale: bool) -> bool:
        quotes = client.view.quotes.values()
        return bool(quotes) and all(q.get("stale") is stale for q in quotes)

    async def rest_stale(stale: bool) -> bool:
        ready = await get_json(f"{api.http}/readyz")
        tickers = await get_json(f"{api.http}/tickers")
        return ready["quotes_stale"] is stale and all(q["stale"] is stale for q in tickers.values())

    try:
        await eventually(lambda: everything.view.diffs >= 5, "diffs")
        assert await rest_stale(False)
        poller.stop(signal.SIGKILL)
        await eventually(
            lambda: all(all_stale(c, True) for c in clients),
            "clients told every quote is stale",
            limit=HEARTBEAT_GONE_WITHIN,
        )
        assert await rest_stale(True)
        ready = await get_json(f"{api.http}/readyz")
        assert ready["status"] == "ready"  # restarting the api would not help
        assert ready["producer_age_s"] is None
        assert "no producer is alive" in ready["note"]
        assert "no producer is alive" in api.output()
        assert scrape(f"{api.http}/metrics")["tickerhub_quotes_stale"] == 1
        # As data, on the same connections: a diff, not a reconnect or a snapshot.
        assert everything.view.snapshots == 1
        assert watching.view.messages[-1]["data"] == {
            "MSFT": {"symbol": "MSFT", "seq": watching.view.quotes["MSFT"]["seq"], "stale": True}
        }

        procs(standby_poller(redis_server.url))
        await eventually(lambda: all(all_stale(c, False) for c in clients), "fresh quotes again")
        await eventually(lambda: rest_stale(False), "REST fresh again")
        assert scrape(f"{api.http}/metrics")["tickerhub_quotes_stale"] == 0
        for client in clients:
            assert not client.view.seq_went_back
            assert client.view.closed is None
        await eventually(lambda: "quotes are fresh again" in api.output(), "logged once")
        assert api.output().count("no producer is alive") == 1
    finally:
        for client in clients:
            await client.close()


async def test_two_pollers_write_the_snapshot_back_to_a_redis_that_restarted_empty(
    own_redis_server: Any, procs: Any
) -> None:
    """Neither the leader nor the standby adopts an empty Redis: it is written back with a
    higher seq (a reset), as a lone poller does, and the clients converge."""
    # The default lease: the restart must fit in it for the leader to keep leading.
    first = procs(standby_poller(own_redis_server.url, lease_ttl=5))
    first.wait_for_output("took the lease")
    second = procs(standby_poller(own_redis_server.url, lease_ttl=5))
    second.wait_for_output("standby: another poller holds the lease")
    api = start_api(procs, own_redis_server.url)
    client = await Client.connect(f"{api.ws}/ws/prices", name="all")
    redis = Redis.from_url(own_redis_server.url)
    try:
        await eventually(lambda: client.view.diffs >= 5, "diffs")
        seq_before = await redis_seq(redis)
        own_redis_server.restart()  # empty: it persists nothing
        await redis.aclose()
        redis = Redis.from_url(own_redis_server.url)
        # Written back with a higher seq, not started over at 1.
        await eventually(
            lambda: _seq_above(redis, seq_before), "the snapshot written back", detail=api.output
        )
        assert await redis.hlen("prices") == len(TICKERS)
        # One leader through it all: a leader that was deposed notices at its next renewal.
        await eventually(
            lambda: sum(metrics(p)["tickerhub_poller_leader"] for p in (first, second)) == 1,
            "exactly one leader",
        )
        outputs = first.output() + second.output()
        assert outputs.count("took the lease") == 1, outputs  # nobody took it over
        for poller in (first, second):
            assert poller.stop() == 0, poller.output()
        assert client.view.closed is None
        assert not client.view.seq_went_back
        await converge(api, [client], [None])
    finally:
        await client.close()
        await redis.aclose()


async def _seq_above(redis: Redis, seq: int) -> bool:
    with contextlib.suppress(Exception):
        return await redis_seq(redis) > seq
    return False
