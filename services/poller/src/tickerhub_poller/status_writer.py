"""Keeps the source status document in Redis (``source:status``, docs/protocol.md).

Written every :data:`WRITE_INTERVAL` seconds, and soon after a state changes (at
most one write per :data:`MIN_GAP`, so a flapping source costs Redis a bounded
rate), with a TTL of :data:`TTL_SECONDS`: a poller that dies stops refreshing it
and the key expires, which the api's ``GET /status`` reports as "no producer".

A failed write is logged at DEBUG only: Redis being down is already reported
(the publisher's condition log, ``/readyz``), and the next write repeats it.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tickerhub_core.cancellation import honour_cancellation
from tickerhub_poller.source_status import SourceStatus

log = logging.getLogger(__name__)

WRITE_INTERVAL = 2.0
TTL_SECONDS = 10  # five write intervals: a few lost writes do not expire it
MIN_GAP = 0.25


class StatusWriter:
    def __init__(
        self,
        redis: Redis,
        key: str,
        status: SourceStatus,
        interval: float = WRITE_INTERVAL,
        ttl: int = TTL_SECONDS,
    ) -> None:
        self._redis = redis
        self._key = key
        self._status = status
        self._interval = interval
        self._ttl = ttl
        self._changed = asyncio.Event()
        status.on_change = self._changed.set
        self.writes = 0  # successful writes, for tests

    async def write(self) -> bool:
        """Write the document once; False (logged at DEBUG) if Redis refused."""
        payload = orjson.dumps(self._status.document())
        try:
            await self._redis.set(self._key, payload, ex=self._ttl)
        except (RedisError, OSError) as exc:
            log.debug("could not write the source status: %s", exc)
            return False
        self.writes += 1
        return True

    async def run(self) -> None:
        while True:
            self._changed.clear()
            await self.write()
            honour_cancellation()  # redis-py may have swallowed a cancel (cancellation.py)
            await asyncio.sleep(MIN_GAP)
            try:
                async with asyncio.timeout(max(0.0, self._interval - MIN_GAP)):
                    await self._changed.wait()
            except TimeoutError:
                pass
