"""The one way the services build their Redis client (nothing connects here).

Both services used to build it themselves with different timeouts. Shared
defaults: a 5 s connect timeout (a Redis that does not accept within that is
down, and the callers' retry loops take over), a health check on connections
idle for 30 s (a dead TCP connection is found before a command hangs on it),
bytes in and out (the wire format is encoded once, by us).

``socket_timeout`` is per use: the poller bounds every command (10 s); the api
passes ``None`` because its pub/sub reader waits with ``get_message(timeout=)``
and pings on its own schedule.

The pool is bounded (``REDIS_MAX_CONNECTIONS``) and a command that finds every
connection busy **waits** for one, up to ``REDIS_POOL_TIMEOUT`` seconds
(redis-py's ``BlockingConnectionPool``), instead of failing at once with "Too
many connections" as the default pool does. Past that wait it raises
:class:`PoolExhaustedError`: the process is overloaded, Redis is fine, and the
callers answer it as overload (HTTP 503 with ``Retry-After``), never as an
outage.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tickerhub_core.settings import CommonSettings

CONNECT_TIMEOUT = 5.0
HEALTH_CHECK_INTERVAL = 30


class PoolExhaustedError(RedisConnectionError):
    """Every pooled connection stayed busy for the pool timeout: overload, not an outage.

    A ``ConnectionError`` subclass, so code that treats any Redis error as a
    failure to retry keeps doing so; code that can tell overload apart catches
    this first.
    """


class WaitingPool(BlockingConnectionPool):
    """``BlockingConnectionPool`` whose wait-timeout error is :class:`PoolExhaustedError`.

    redis-py (8.x, bounded in ``packages/core/pyproject.toml``) raises a plain
    ``ConnectionError("No connection available.")`` chained from the wait's
    ``asyncio.TimeoutError``; that chain is how the two are told apart here
    (``tests/test_pool.py`` fails if it changes). A connect failure or a connect
    timeout raised while checking out a connection is not a wait timeout and
    passes unchanged.
    """

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError):
                raise PoolExhaustedError(
                    f"all {self.max_connections} Redis connections stayed busy for {self.timeout}s"
                ) from exc
            raise


def redis_client(
    settings: CommonSettings,
    *,
    socket_timeout: float | None = None,
    max_connections: int | None = None,
) -> Redis:
    """An asyncio Redis client for ``settings.redis_url``; the caller closes it (``aclose``).

    ``max_connections`` overrides ``settings.redis_max_connections`` (the api's
    probe client uses a pool of its own, of two).
    """
    pool = WaitingPool.from_url(
        settings.redis_url,
        decode_responses=False,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=socket_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        max_connections=max_connections or settings.redis_max_connections,
        timeout=settings.redis_pool_timeout,
    )
    return Redis.from_pool(pool)
