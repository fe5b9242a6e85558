"""The one way the services build their Redis client (nothing connects here).

Both services used to build it themselves with different timeouts. Shared
defaults: a 5 s connect timeout (a Redis that does not accept within that is
down, and the callers' retry loops take over), a health check on connections
idle for 30 s (a dead TCP connection is found before a command hangs on it),
bytes in and out (the wire format is encoded once, by us).

``socket_timeout`` is per use: the poller bounds every command (10 s); the api
passes ``None`` because its pub/sub reader waits with ``get_message(timeout=)``
and pings on its own schedule.
"""

from __future__ import annotations

from redis.asyncio import Redis

from tickerhub_core.settings import CommonSettings

CONNECT_TIMEOUT = 5.0
HEALTH_CHECK_INTERVAL = 30


def redis_client(settings: CommonSettings, *, socket_timeout: float | None = None) -> Redis:
    """An asyncio Redis client for ``settings.redis_url``; the caller closes it (``aclose``)."""
    return Redis.from_url(
        settings.redis_url,
        decode_responses=False,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=socket_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )
