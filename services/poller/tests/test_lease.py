"""The lease: its timer (pure), the leadership loop over a fake store, the store on real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from tickerhub_poller.lease import Leadership, LeaseLost, LeaseStore, LeaseTimer
from tickerhub_poller.lease_clock import HolderWatch
from tickerhub_testkit.wait import eventually

# -- LeaseTimer: pure ---------------------------------------------------------------


def test_the_deadline_counts_from_the_send_time_minus_the_margin() -> None:
    timer = LeaseTimer.for_ttl(5.0)
    assert not timer.held(0.0)
    timer.taken(sent_at=100.0)
    assert timer.deadline == pytest.approx(104.0)  # ttl 5 - margin 1
    assert timer.held(103.99)
    assert not timer.held(104.0)
    timer.check(103.0)
    with pytest.raises(LeaseLost):
        timer.check(104.0)


def test_renewals_are_due_a_third_of_the_ttl_apart_and_retried_sooner() -> None:
    timer = LeaseTimer.for_ttl(3.0)
    timer.taken(10.0)
    assert timer.wake_at() == pytest.approx(11.0)  # renewal due before the deadline (12.4)
    timer.renewal_failed(11.0)
    assert timer.wake_at() == pytest.approx(11.3)
    for now in (11.3, 11.6, 11.9, 12.2):
        timer.renewal_failed(now)
    assert timer.wake_at() == pytest.approx(12.4)  # then the deadline: stop publishing
    timer.renewed(12.3)
    assert timer.held(12.5)  # a late renewal that made it counts from its own send time


def test_a_dropped_lease_is_not_held_whatever_the_deadline() -> None:
    timer = LeaseTimer.for_ttl(5.0)
    timer.taken(0.0)
    timer.dropped()
    assert not timer.held(0.1)
    with pytest.raises(LeaseLost):
        timer.check(0.1)


# -- HolderWatch: pure ----------------------------------------------------------------


def test_a_standby_takes_the_lease_only_once_its_holder_has_stopped_writing() -> None:
    watch = HolderWatch.for_ttl(5.0)
    assert watch.may_take(0.0)  # never saw a holder
    watch.seen(10.0, 5000)  # held, 5 s left: its holder writes until 14 at the latest
    assert not watch.may_take(13.9)
    assert watch.may_take(14.0)
    # Gone at 14.5: expired, or lost after its holder stopped: fine to take.
    watch.seen(14.5, -2)
    assert watch.may_take(14.5)


def test_a_key_gone_early_is_left_to_its_holder_for_one_more_ttl() -> None:
    watch = HolderWatch.for_ttl(5.0)
    watch.seen(10.0, 5000)
    watch.seen(11.0, -2)  # Redis lost it (restart) while its holder still writes
    assert not watch.may_take(14.5)
    watch.seen(14.5, -2)  # still gone: the extra ttl is not extended again
    assert watch.may_take(15.0)  # a dead holder did not set it again: take it
    watch.seen(12.0, 4900)  # a live one did, on its next renewal
    assert not watch.may_take(15.0)
    watch.seen(20.0, -1)  # set by hand without expiry: treated as fresh
    assert not watch.may_take(23.9)


# -- Leadership over an in-memory store --------------------------------------------


class FakeStore:
    """The lease semantics (SET NX; renew/release only by the holder); ``down`` fails calls."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.down = False
        self.renewals = 0

    def _reachable(self) -> None:
        if self.down:
            raise ConnectionError("redis down")

    async def take(self, token: str, ttl: float) -> bool:
        self._reachable()
        if self.holder is None:
            self.holder = token
            return True
        return False

    async def renew(self, token: str, ttl: float) -> bool:
        self._reachable()
        self.renewals += 1
        return self.holder == token

    async def pttl(self) -> int:
        self._reachable()
        return -2 if self.holder is None else 500

    async def release(self, token: str) -> bool:
        self._reachable()
        if self.holder == token:
            self.holder = None
            return True
        return False


class Roles:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.writes_refused = 0

    async def lead(self) -> None:
        self.log.append("lead")
        try:
            await asyncio.Event().wait()
        finally:
            self.log.append("lead ended")

    async def standby(self) -> None:
        self.log.append("standby")
        await asyncio.Event().wait()


def leadership(store: FakeStore, ttl: float = 0.5) -> Leadership:
    return Leadership(store, ttl)  # type: ignore[arg-type]  # the fake has the same methods


async def test_takes_a_free_lease_and_releases_it_on_shutdown() -> None:
    store, roles = FakeStore(), Roles()
    lead = leadership(store)
    task = asyncio.create_task(lead.run(roles.lead, roles.standby))
    await eventually(lambda: lead.leading, "leading")
    assert store.holder == lead.token
    await eventually(lambda: store.renewals >= 2, "renewals")
    lead.check()  # renewed: still held
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.holder is None
    assert roles.log[-2:] == ["lead", "lead ended"]


async def test_stands_by_while_another_holds_it_and_takes_over_when_freed() -> None:
    store, roles = FakeStore(), Roles()
    store.holder = "other"
    lead = leadership(store)
    task = asyncio.create_task(lead.run(roles.lead, roles.standby))
    try:
        await eventually(lambda: roles.log == ["standby"], "standby")
        await asyncio.sleep(0.3)
        assert not lead.leading
        assert roles.log == ["standby"]
        with pytest.raises(LeaseLost):
            lead.check()
        store.holder = None  # the other's lease lapsed
        await eventually(lambda: lead.leading, "took over")
        assert store.holder == lead.token
        assert lead.terms == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_lease_found_taken_stops_the_leader_at_once() -> None:
    store, roles = FakeStore(), Roles()
    lead = leadership(store)
    task = asyncio.create_task(lead.run(roles.lead, roles.standby))
    try:
        await eventually(lambda: lead.leading, "leading")
        store.holder = "usurper"  # ours lapsed (a pause) and another poller took it
        await eventually(lambda: "lead ended" in roles.log, "leader cancelled")
        assert not lead.leading
        with pytest.raises(LeaseLost):
            lead.check()
        await eventually(
            lambda: roles.log[-1] == "standby", "back to standby", detail=lambda: str(roles.log)
        )
        assert store.holder == "usurper"  # our release did not touch theirs
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_unrenewable_lease_stops_the_leader_by_its_own_deadline() -> None:
    store, roles = FakeStore(), Roles()
    lead = leadership(store, ttl=0.5)
    task = asyncio.create_task(lead.run(roles.lead, roles.standby))
    try:
        await eventually(lambda: lead.leading, "leading")
        store.down = True  # renewals fail: the leader cannot know it still holds it
        await eventually(lambda: "lead ended" in roles.log, "leader cancelled")
        assert store.holder == lead.token  # Redis never said no: the deadline stopped it
        with pytest.raises(LeaseLost):
            lead.check()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- LeaseStore on a real Redis -----------------------------------------------------


@pytest.mark.integration
async def test_only_the_holder_renews_or_releases(redis_server: Any) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        await redis.delete("poller:lease")
        store = LeaseStore(redis, "poller:lease")
        assert await store.take("a", 0.5)
        assert not await store.take("b", 0.5)
        assert not await store.renew("b", 10)
        assert not await store.release("b")
        assert await store.holder() == "a"
        assert await store.renew("a", 10)
        assert 5000 < await redis.pttl("poller:lease") <= 10000
        assert await store.release("a")
        assert await store.holder() is None
        assert await store.take("b", 0.2)
        await eventually(lambda: _gone(redis), "expiry")
        assert await store.take("c", 10)
        assert not await store.renew("b", 10)  # lapsed and taken: b cannot get it back
        # Redis lost the key (a restart without persistence): its holder sets it again.
        await redis.flushall()
        assert await store.renew("c", 10)
        assert await store.holder() == "c"
    finally:
        await redis.aclose()


async def _gone(redis: Redis) -> bool:
    return not await redis.exists("poller:lease")


# -- fencing: no write without the lease --------------------------------------------


async def test_every_write_is_refused_without_the_lease_before_reaching_redis() -> None:
    from tickerhub_core.keys import RedisKeys
    from tickerhub_poller.fencing import FencedBarStore, FencedNewsStore, FencedSnapshotStore

    lead = leadership(FakeStore())
    # Never connected: a refused write must not even try.
    redis = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1)
    keys = RedisKeys()
    snapshots = FencedSnapshotStore(redis, keys, lead.check)
    bars = FencedBarStore(redis, keys, lead.check)
    news = FencedNewsStore(redis, keys, lead.check)
    writes = [
        snapshots.publish_diff(0, b"{}", {}),
        snapshots.reset(1, {}),
        snapshots.beat(30),
        bars.publish([], 1),
        news.add([], 1),
        news.restore([], 1),
    ]
    for write in writes:
        with pytest.raises(LeaseLost):
            await write
    await redis.aclose()


@pytest.mark.integration
async def test_a_standby_is_healthy_and_neither_calls_the_source_nor_writes(
    redis_server: Any, procs: Any, tmp_path: Any
) -> None:
    from tickerhub_poller.healthcheck import check
    from tickerhub_testkit.metrics import scrape
    from tickerhub_testkit.net import free_port
    from tickerhub_testkit.processes import poller_process

    redis = Redis.from_url(redis_server.url)
    try:
        await redis.set("poller:lease", "another-poller", px=60_000)
        await redis.set("prices:seq", 7)
        beat = tmp_path / "beat"
        port = free_port()
        standby = procs(
            poller_process(
                redis_server.url,
                ["AAPL", "MSFT"],
                LEASE_TTL="1",
                HEARTBEAT_FILE=str(beat),
                METRICS_PORT=str(port),
            )
        )
        standby.wait_for_output("standby: another poller holds the lease")
        await eventually(beat.exists, "the heartbeat file", detail=standby.output)
        assert check(str(beat)) is None  # the container healthcheck passes
        await asyncio.sleep(2.5)  # several standby rounds (LEASE_TTL 1 s)
        assert check(str(beat)) is None
        metrics = scrape(f"http://127.0.0.1:{port}/metrics")
        assert metrics["tickerhub_poller_leader"] == 0
        assert metrics.sum("tickerhub_poller_source_requests_total") == 0
        assert metrics["tickerhub_poller_seq"] == 7  # follows Redis
        assert await redis.get("prices:seq") == b"7"
        assert await redis.get("prices:heartbeat") is None  # only a leader says "alive"
        assert await redis.get("poller:lease") == b"another-poller"
        assert "polling" not in standby.output()
    finally:
        await redis.aclose()
