"""``/readyz`` against a Redis no producer ever wrote to (the api as a subprocess)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.wait import eventually

from .conftest import Producer

pytestmark = pytest.mark.integration


async def test_readyz_on_a_fresh_redis_says_no_producer_wrote_yet(
    redis_server: Any, procs: Procs
) -> None:
    """Ready (the api works; restarting it would not help), but the body says why there
    are no quotes, until a producer writes."""
    api = start_api(procs, redis_server.url)
    client = Redis.from_url(redis_server.url)
    try:
        async with httpx.AsyncClient(base_url=api.http) as http:
            empty = await http.get("/readyz")
            assert empty.status_code == 200
            assert empty.json()["symbols"] == 0
            assert "no producer has written a snapshot" in empty.json()["note"]
            await Producer(client).publish({"AAPL": {"price": 1.0}})

            async def noted() -> bool:
                body = (await http.get("/readyz")).json()
                return body["symbols"] == 1 and body.get("note") is None

            await eventually(noted, "the note gone once a snapshot exists")
    finally:
        await client.aclose()
