"""``GET /status``: is data coming in, and if not, why.

Shows the poller's source status as it keeps it in Redis (``source:status``,
docs/protocol.md: per source ``ok`` | ``degraded`` | ``down``, the last error,
counts), beside this api's own state (Redis, the snapshot it serves, the
producer's heartbeat: what ``/readyz`` checks, through the same cached probe).
``/readyz`` stays about the api: a Yahoo outage does not make the api unready.

Always ``200``: the body says what is wrong. The stored document is read through
:class:`StatusReader` (cached for a second, concurrent requests share one read),
so a ``/status`` flood costs Redis one ``GET`` a second.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from tickerhub_api.probes import ReadinessProbe
from tickerhub_api.schemas import ProducerStatus, Status
from tickerhub_api.stream.reads import Reads
from tickerhub_core import wire

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
READ_TIMEOUT = 2.0

NO_PRODUCER = (
    "no source status in Redis: no poller has reported for 10 s (stopped, dead, or not started yet)"
)
REDIS_DOWN = "Redis is unreachable: the poller's source status cannot be read"
UNREADABLE = "the source status in Redis is not in the documented shape (another producer?)"

router = APIRouter()


class StatusReader:
    """The stored status document (or why there is none); cached, single-flight."""

    def __init__(self, redis: Redis, key: str, cache_seconds: float = CACHE_SECONDS) -> None:
        self._redis = redis
        self._key = key
        self._cache_seconds = cache_seconds
        self._last: tuple[ProducerStatus | None, str | None] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def read(self) -> tuple[ProducerStatus | None, str | None]:
        """``(document, None)`` or ``(None, why not)``."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._last is None or loop.time() - self._read_at >= self._cache_seconds:
                self._last = await self._ask()
                self._read_at = loop.time()
            return self._last

    async def _ask(self) -> tuple[ProducerStatus | None, str | None]:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                raw = await self._redis.get(self._key)
        except ResponseError:  # WRONGTYPE: Redis answered, the key holds something else
            return None, UNREADABLE
        except (RedisError, OSError, TimeoutError):
            return None, REDIS_DOWN
        if raw is None:
            return None, NO_PRODUCER
        try:
            document = ProducerStatus.model_validate(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            log.debug("unreadable source status: %s", exc)
            return None, UNREADABLE
        document.age_s = _age(document.written_at)
        return document, None


def _age(written_at: str | None) -> float | None:
    if not written_at:
        return None
    try:
        written = datetime.fromisoformat(written_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if written.tzinfo is None:
        written = written.replace(tzinfo=UTC)
    return max(0.0, round(datetime.now(UTC).timestamp() - written.timestamp(), 1))


def _reads(request: Request) -> Reads:
    return request.app.state.reads


def _probe(request: Request) -> ReadinessProbe:
    return request.app.state.probe


def _reader(request: Request) -> StatusReader:
    return request.app.state.status_reader


@router.get("/status", response_model=Status, summary="The data source's health and the api's")
async def status(
    reads: Annotated[Reads, Depends(_reads)],
    probe: Annotated[ReadinessProbe, Depends(_probe)],
    reader: Annotated[StatusReader, Depends(_reader)],
) -> Any:
    # Side by side: with Redis hanging each waits its own timeout (2 s), not the sum.
    check, (producer, note) = await asyncio.gather(probe.check(), reader.read())
    hub = reads.status()
    beat = check.producer_beat
    return Status(
        state=producer.state if producer is not None else "no_producer",
        producer=producer,
        note=note,
        api={
            "redis": check.ok,
            "snapshot": hub.ready,
            "seq": hub.seq,
            "epoch": hub.epoch,
            "symbols": hub.symbols,
            "connections": hub.connections,
            "producer_age_s": None if beat is None else max(0.0, (wire.now_ms() - beat) / 1000),
            "quotes_stale": hub.quotes_stale,
        },
    )
