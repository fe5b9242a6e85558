"""Fixtures: ``redis_server`` (shared, flushed per test), ``own_redis_server`` (private),
``sentinel_cluster`` (a primary, a replica and three sentinels), ``procs`` (service
subprocesses stopped when the test ends)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tickerhub_testkit.processes import Procs
from tickerhub_testkit.redis_server import RedisServer
from tickerhub_testkit.sentinel import SentinelCluster


@pytest.fixture(scope="session")
def _session_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_server(_session_redis: RedisServer) -> RedisServer:
    """A real redis-server on a free port, empty at the start of the test."""
    _session_redis.start()  # a previous test may have stopped it
    _session_redis.flush()
    return _session_redis


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for this test alone: stop and restart it at will."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sentinel_cluster() -> Iterator[SentinelCluster]:
    """A primary, a replica and three sentinels for this test alone, failing over in a few
    seconds; every process is stopped when the test ends, whatever happened."""
    cluster = SentinelCluster()
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Start a service with ``procs(proc)``; each is stopped when the test ends, whatever
    happens (SIGTERM, then SIGKILL after 10 s)."""
    started = Procs()
    try:
        yield started
    finally:
        started.stop_all()
