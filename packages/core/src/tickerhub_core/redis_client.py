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

With ``REDIS_SENTINELS`` set, the same client is built through redis-py's
Sentinel support (``Sentinel(...).master_for(...)``): same timeouts, same
waiting pool (:class:`WaitingSentinelPool`), but every new connection first asks
the sentinels where the primary is. On a failover the old primary's connections
fail (or answer READONLY, which redis-py turns into a connection error and a
disconnect), and the callers' retry loops reconnect to the new primary.
``REDIS_URL`` then gives only credentials, db and TLS (see
:mod:`tickerhub_core.sentinel`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from tickerhub_core.sentinel import url_connection_kwargs
from tickerhub_core.settings import CommonSettings

CONNECT_TIMEOUT = 5.0
HEALTH_CHECK_INTERVAL = 30
# A sentinel answers from memory: one that takes longer than this to connect or
# reply is skipped for the next (each failover lookup asks them in turn).
SENTINEL_TIMEOUT = 2.0


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


class WaitingSentinelPool(SentinelConnectionPool, WaitingPool):
    """The sentinel-managed pool (connections find the primary through the sentinels)
    with :class:`WaitingPool`'s bounded wait. The MRO runs SentinelConnectionPool's
    ``__init__`` first, which passes the rest on to the blocking pool's.

    The pool also owns the :class:`Sentinel` that built it (one per client): closing
    the client closes the connections to the sentinels too, which redis-py leaves open.
    """

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """A pooled connection, reconnected first if it is open to a former primary.

        redis-py drops idle connections when it learns of a new primary, but one in use
        at that moment comes back to the pool still open to the old node. After a planned
        failover that node is a replica: reads on it succeed, with stale data (seen: an
        api reloading its snapshot from the demoted node, two seqs and an epoch behind
        the new primary, and staying there).
        """
        connection = await super().get_connection(*args, **kwargs)
        if not open_to_another_node(self, connection):
            return connection
        try:
            await connection.disconnect()
            await connection.connect()  # a sentinel-managed connect asks where the primary is
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.sentinel_manager.aclose()


def open_to_another_node(pool: SentinelConnectionPool, connection: Any) -> bool:
    """``connection`` is connected, and not to the primary ``pool`` last heard of."""
    if pool.master_address is None or not getattr(connection, "is_connected", False):
        return False
    here = (str(getattr(connection, "host", "")), int(getattr(connection, "port", 0)))
    host, port = pool.master_address
    return here != (str(host), int(port))


def redis_client(
    settings: CommonSettings,
    *,
    socket_timeout: float | None = None,
    max_connections: int | None = None,
) -> Redis:
    """An asyncio Redis client for ``settings.redis_url``; the caller closes it (``aclose``).

    ``max_connections`` overrides ``settings.redis_max_connections`` (the api's
    probe client uses a pool of its own, of two). With ``REDIS_SENTINELS`` the
    client follows the primary the sentinels name.
    """
    if settings.redis_sentinels:
        return _sentinel_client(settings, socket_timeout, max_connections)
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


def _sentinel_client(
    settings: CommonSettings, socket_timeout: float | None, max_connections: int | None
) -> Redis:
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
    }
    password = settings.redis_sentinel_password.get_secret_value()
    if password:
        sentinel_kwargs["password"] = password
    sentinel = Sentinel(settings.sentinel_addresses, sentinel_kwargs=sentinel_kwargs)
    client: Redis = sentinel.master_for(
        settings.redis_sentinel_master,
        connection_pool_class=WaitingSentinelPool,
        **url_connection_kwargs(settings.redis_url),
        decode_responses=False,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=socket_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        max_connections=max_connections or settings.redis_max_connections,
        timeout=settings.redis_pool_timeout,
    )
    return client
