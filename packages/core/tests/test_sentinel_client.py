"""The sentinel-managed client against real sentinels: it finds the primary, follows a
failover, and closing it closes its connections to the sentinels too."""

from __future__ import annotations

import asyncio
import os

import pytest
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError

from tickerhub_core.primary_watch import follow_primary, on_former_primary, primary_address
from tickerhub_core.redis_client import WaitingSentinelPool, redis_client
from tickerhub_core.settings import CommonSettings
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.sentinel import SentinelCluster
from tickerhub_testkit.wait import eventually

pytestmark = pytest.mark.integration


def settings_for(cluster: SentinelCluster) -> CommonSettings:
    # REDIS_URL's host and port lead nowhere: only the sentinels can say where Redis is.
    return CommonSettings(
        redis_url=cluster.redis_url,
        redis_sentinels=cluster.sentinels,
        redis_sentinel_master=cluster.master,
    )


async def _clients_of(port: int) -> int:
    async with Redis(port=port) as sentinel:
        return len(await sentinel.client_list()) - 1  # not counting this one


async def test_the_client_finds_the_primary_and_closes_everything(
    sentinel_cluster: SentinelCluster,
) -> None:
    cluster = sentinel_cluster
    primary = cluster.primary_port()
    assert primary is not None
    before = [await _clients_of(port) for port in cluster.sentinel_ports]
    client = redis_client(settings_for(cluster), socket_timeout=5)
    try:
        await client.set("written", "through the sentinels")
    finally:
        await client.aclose()
    async with Redis(port=primary) as direct:
        assert await direct.get("written") == b"through the sentinels"

    async def sentinels_left_alone() -> bool:
        now = [await _clients_of(port) for port in cluster.sentinel_ports]
        return now == before

    await eventually(sentinels_left_alone, "no connection left open to a sentinel")


async def test_sentinels_with_a_password_of_their_own() -> None:
    cluster = SentinelCluster(password="sentinel-secret")
    try:
        cluster.start()
        settings = settings_for(cluster)
        with_password = CommonSettings(
            **settings.model_dump(exclude={"redis_sentinel_password"}),
            redis_sentinel_password="sentinel-secret",
        )
        client = redis_client(with_password, socket_timeout=5)
        try:
            await client.set("written", "past the sentinels' password")
        finally:
            await client.aclose()
        async with Redis(port=cluster.primary_port() or 0) as direct:
            assert await direct.get("written") == b"past the sentinels' password"
        # Without it every sentinel refuses: no primary is found (the client says so).
        client = redis_client(settings, socket_timeout=5)
        try:
            with pytest.raises(RedisConnectionError, match="No master found"):
                await client.set("written", "refused")
        finally:
            await client.aclose()
    finally:
        cluster.close()


class PointedSentinel(Sentinel):
    """A sentinel manager that names whichever port the test says is the primary."""

    def __init__(self, port: int) -> None:
        super().__init__([])
        self.port = port

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        return "127.0.0.1", self.port


async def test_a_write_answered_readonly_reconnects_to_the_primary(
    sentinel_cluster: SentinelCluster,
) -> None:
    """A connection still on a demoted primary: the Lua publish there is answered READONLY
    (not a generic script error), which the sentinel-managed connection turns into a
    disconnect and a ConnectionError; the next attempt (the poller's retry) asks for the
    primary again and lands on it. Deterministic: the "sentinels" here point at the
    replica first (a primary that has just been demoted), then at the real primary."""
    primary, replica = sentinel_cluster.data_ports
    sentinels = PointedSentinel(replica)
    client = sentinels.master_for(
        "tickerhub", connection_pool_class=WaitingSentinelPool, max_connections=2, timeout=1.0
    )
    try:
        async with Redis(port=replica) as direct:
            with pytest.raises(ReadOnlyError):  # what the node itself answers
                await Producer(direct).publish({"AAPL": {"price": 1.0}})
        producer = Producer(client)
        with pytest.raises(RedisConnectionError, match="now a slave"):
            await producer.publish({"AAPL": {"price": 1.0}})
        sentinels.port = primary  # the failover completes
        assert await producer.publish({"AAPL": {"price": 1.0}}) == 1
        async with Redis(port=primary) as direct:
            assert await direct.get("prices:seq") == b"1"
    finally:
        await client.aclose()


async def test_publishing_follows_a_planned_failover(sentinel_cluster: SentinelCluster) -> None:
    cluster = sentinel_cluster
    client = redis_client(settings_for(cluster), socket_timeout=5)
    producer = Producer(client)
    try:
        await producer.publish({"AAPL": {"price": 1.0}})
        await client.execute_command("WAIT", 1, 5000)  # the replica has it: nothing is lost
        old = cluster.demote_primary()
        new = await asyncio.to_thread(cluster.wait_failover, old)

        async def demoted() -> bool:
            async with Redis(port=old) as direct:
                return bool((await direct.info("replication"))["role"] == "slave")

        # Until then the old primary still takes writes (Sentinel's split-brain window);
        # once it is a replica, a connection still on it is answered READONLY.
        await eventually(demoted, "the old primary to become a replica")

        async def published() -> bool:
            # As the poller's retry does: an attempt that fails is tried again.
            try:
                await producer.publish({"AAPL": {"price": 2.0}})
            except RedisError:
                return False
            return True

        await eventually(published, "a publish to succeed after the failover")
        async with Redis(port=new) as direct:
            assert int(await direct.get("prices:seq") or 0) == producer.seq == 2
    finally:
        await client.aclose()


async def test_a_connection_left_on_the_former_primary_is_recognised(
    sentinel_cluster: SentinelCluster,
) -> None:
    """What the api's subscription checks after each read: the sentinels name another
    primary than the one its connection is open to."""
    cluster = sentinel_cluster
    client = redis_client(settings_for(cluster), socket_timeout=5)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("prices")
        assert pubsub.connection is not None
        old = cluster.primary_port()
        assert await primary_address(client) == ("127.0.0.1", old)
        assert not on_former_primary(client, pubsub.connection)
        cluster.demote_primary()
        new = await asyncio.to_thread(cluster.wait_failover, old)
        assert await primary_address(client) == ("127.0.0.1", new)
        assert on_former_primary(client, pubsub.connection)
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_a_connection_in_use_across_a_failover_is_not_reused_on_the_old_node(
    sentinel_cluster: SentinelCluster,
) -> None:
    """redis-py drops idle connections when the primary changes; one in use then comes
    back to the pool open to the demoted node, where reads succeed with stale data."""
    cluster = sentinel_cluster
    client = redis_client(settings_for(cluster), socket_timeout=5)
    try:
        await client.set("where", "before")
        old = cluster.primary_port()
        assert old is not None
        held = await client.connection_pool.get_connection()  # busy through the failover
        assert held.port == old
        cluster.demote_primary()
        new = await asyncio.to_thread(cluster.wait_failover, old)
        assert await primary_address(client) == ("127.0.0.1", new)  # the pool learns it
        await client.connection_pool.release(held)  # still open to the old node
        role = await client.execute_command("ROLE")
        assert role[0] in (b"master", "master"), role
        assert held.port == new  # the same connection, reconnected to the new primary
    finally:
        await client.aclose()


async def test_without_sentinels_nothing_is_watched() -> None:
    client = Redis(port=1)  # nothing listens: any I/O would fail
    try:
        assert await primary_address(client) is None
        assert not on_former_primary(client, object())
        await asyncio.wait_for(follow_primary(client), timeout=5)  # returns at once
    finally:
        await client.aclose()


def _a_failing_test(cluster: SentinelCluster, pids: list[int]) -> None:
    try:
        cluster.start()
        pids.extend(cluster.pids)
        cluster.kill_primary()
        raise RuntimeError("the test failed")
    finally:
        cluster.close()  # what the sentinel_cluster fixture does


def test_the_cluster_leaves_no_process_behind_when_a_test_fails() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="the test failed"):
        _a_failing_test(SentinelCluster(), pids)
    assert len(pids) == 5
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone (and reaped)
