"""The bounded, waiting Redis pool against a real redis-server: overload is told from an outage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tickerhub_core.redis_client import PoolExhaustedError, WaitingPool, redis_client
from tickerhub_core.settings import CommonSettings


def settings(url: str, **overrides: Any) -> CommonSettings:
    return CommonSettings(redis_url=url, _env_file=None, **overrides)


async def test_pool_size_and_wait_come_from_the_settings(redis_server: Any) -> None:
    client = redis_client(
        settings(redis_server.url, redis_max_connections=7, redis_pool_timeout=0.25)
    )
    try:
        pool = client.connection_pool
        assert isinstance(pool, WaitingPool)
        assert (pool.max_connections, pool.timeout) == (7, 0.25)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_command_waits_for_a_busy_connection_instead_of_failing(redis_server: Any) -> None:
    client = redis_client(
        settings(redis_server.url, redis_max_connections=2, redis_pool_timeout=5.0)
    )
    try:
        held = [await client.connection_pool.get_connection() for _ in range(2)]
        pending = asyncio.ensure_future(client.set("k", "v"))
        await asyncio.sleep(0.1)
        assert not pending.done()  # waiting, not failed with "Too many connections"
        await client.connection_pool.release(held.pop())
        assert await asyncio.wait_for(pending, 5.0)
        await client.connection_pool.release(held.pop())
    finally:
        await client.aclose()


async def test_a_wait_past_the_timeout_is_overload_not_an_outage(redis_server: Any) -> None:
    client = redis_client(
        settings(redis_server.url, redis_max_connections=2, redis_pool_timeout=0.1)
    )
    try:
        held = [await client.connection_pool.get_connection() for _ in range(2)]
        # Fails loudly if redis-py stops chaining its wait timeout (WaitingPool relies on it).
        with pytest.raises(PoolExhaustedError, match="2 Redis connections stayed busy"):
            await client.get("k")
        for conn in held:
            await client.connection_pool.release(conn)
        assert await client.get("k") is None
    finally:
        await client.aclose()


async def test_redis_down_is_still_a_connection_error_not_overload() -> None:
    from tickerhub_testkit.net import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = redis_client(settings(url, redis_max_connections=2, redis_pool_timeout=0.1))
    try:
        with pytest.raises(RedisConnectionError) as caught:
            await client.ping()
        assert not isinstance(caught.value, PoolExhaustedError)
    finally:
        await client.aclose()
