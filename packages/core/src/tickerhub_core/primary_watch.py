"""Follow the Sentinel primary even when no connection fails.

A sentinel-managed client only asks the sentinels where the primary is when it
opens a connection. A connection that stays open to a former primary is not
always closed for us: a node demoted by a planned failover may keep pub/sub
clients, and a primary cut off from the sentinels (a partition) keeps every
client. So each service asks the sentinels on a schedule (:func:`follow_primary`,
one cheap ``SENTINEL MASTERS`` round every few seconds). When the answer
changes, redis-py's pool drops its idle connections to the former primary; the
connections held open (the api's subscription) check :func:`on_former_primary`
after each read and reconnect.

Without ``REDIS_SENTINELS`` all of this does nothing (no I/O).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import RedisError

from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.redis_client import open_to_another_node

log = logging.getLogger(__name__)

FOLLOW_INTERVAL = 5.0


async def primary_address(redis: Redis) -> tuple[str, int] | None:
    """Where the sentinels say the primary is now (``None`` without Sentinel). Asking
    also makes the pool drop idle connections to a former primary."""
    pool = getattr(redis, "connection_pool", None)
    if not isinstance(pool, SentinelConnectionPool):
        return None
    host, port = await pool.get_master_address()
    return str(host), int(port)


def on_former_primary(redis: Redis, connection: object) -> bool:
    """True when ``connection`` (from ``redis``'s pool) is open to a node the sentinels
    no longer name as primary. No I/O: it compares with the pool's last answer."""
    pool = getattr(redis, "connection_pool", None)
    if not isinstance(pool, SentinelConnectionPool):
        return False
    # Not connected: its next connect asks the sentinels anyway.
    return open_to_another_node(pool, connection)


async def follow_primary(redis: Redis, interval: float = FOLLOW_INTERVAL) -> None:
    """Runs until cancelled: ask the sentinels every ``interval`` seconds; returns at once
    for a client without Sentinel. Failures (every sentinel unreachable, no primary
    mid-failover) are left to the next round and to the callers' own retries."""
    if not isinstance(getattr(redis, "connection_pool", None), SentinelConnectionPool):
        return
    known: tuple[str, int] | None = None
    while True:
        try:
            address = await primary_address(redis)
        except (RedisError, OSError) as exc:
            log.debug("cannot ask the sentinels for the primary: %s", exc)
        else:
            if address is not None and known is not None and address != known:
                log.info("the sentinels name a new primary: %s:%d", address[0], address[1])
            known = address
        honour_cancellation()  # redis-py may have swallowed a cancel
        await asyncio.sleep(interval)
