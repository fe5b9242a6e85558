"""REST fuzzing and hostile symbols against a hub with symbols on demand (the default).

``test_rest_schema.py`` proves the fixed-list hub (``ON_DEMAND=false``) creates no key
from REST. Here a valid symbol the hub does not hold is asked for, so REST may create
exactly what docs/protocol.md (*Symbols on demand*) says: members of ``interest`` and
``interest:unknown``, and for each symbol then polled its quote in ``prices`` and its
``bars:<SYMBOL>``. Nothing else, never a 500, and a hostile (invalid) symbol creates
nothing at all: no key, no interest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import schemathesis
import websockets
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from .conftest import TICKERS
from .test_rest_schema import HOSTILE_SYMBOLS, Hub, run_hub

pytestmark = pytest.mark.integration

WAIT = 30.0
ROOM = 5  # symbols on demand this hub takes (MAX_SYMBOLS - TICKERS): capacity is reached
ON_DEMAND_KEYS = {b"interest", b"interest:unknown", b"interest:config"}


@pytest.fixture(scope="module")
def hub(_session_redis: Any) -> Iterator[Hub]:
    with run_hub(
        _session_redis,
        lambda hub: (
            hub.redis.hlen("prices") == len(TICKERS) and bool(hub.redis.exists("interest:config"))
        ),
        "prices in Redis and the poller's on-demand config",
        poller_env={"MAX_SYMBOLS": str(len(TICKERS) + ROOM)},
        api_env={"ON_DEMAND_WAIT": "0.3"},
    ) as hub:
        yield hub


def allowed_new_keys(hub: Hub) -> set[bytes]:
    asked = {m.decode() for m in hub.redis.zrange("interest", 0, -1)}
    polled = {k.decode() for k in hub.redis.hkeys("prices")}
    return ON_DEMAND_KEYS | {f"bars:{s}".encode() for s in asked | polled}


def later_keys(asked_before: list[bytes]) -> set[bytes]:
    """Keys that may still appear from what the fuzzing asked for (the bars of symbols
    polled since): nothing a hostile symbol could have caused."""
    return {b"bars:" + m for m in asked_before}


@pytest.mark.parametrize("mode", list(GenerationMode), ids=[m.value for m in GenerationMode])
def test_fuzzed_symbols_create_only_the_documented_on_demand_keys(
    hub: Hub, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{hub.api.http}/openapi.json")
    operation = next(
        op.ok()
        for op in schema.get_all_operations()
        if op.ok().path == "/tickers/{symbol}" and op.ok().method == "get"
    )
    keys_before = hub.keys()
    seen: list[int] = []

    @settings(
        max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(mode))
    def check(case: Any) -> None:
        response = case.call(base_url=hub.api.http, timeout=WAIT)
        seen.append(response.status_code)
        # 503: capacity (MAX_SYMBOLS); 504: no first quote within ON_DEMAND_WAIT.
        assert response.status_code < 500 or response.status_code in (503, 504), (
            f"{case.formatted_path}: {response.status_code} {response.text[:300]}"
        )
        if response.status_code >= 400:
            assert "detail" in response.json(), response.text
        if response.status_code == 503:
            assert "capacity" in response.json()["detail"], response.text

    check()
    assert seen
    assert hub.api.alive, hub.api.output()
    assert "Traceback" not in hub.api.output(), hub.api.output()
    new = hub.keys() - keys_before
    assert new <= allowed_new_keys(hub), f"undocumented keys: {new - allowed_new_keys(hub)}"
    # Everything in the snapshot is TICKERS or was asked for, within MAX_SYMBOLS.
    asked = {m.decode() for m in hub.redis.zrange("interest", 0, -1)}
    polled = {k.decode() for k in hub.redis.hkeys("prices")}
    assert polled <= set(TICKERS) | asked
    assert len(asked - set(TICKERS)) <= ROOM


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_hostile_symbols_create_no_key_and_no_interest(hub: Hub, symbol: str) -> None:
    keys_before = hub.keys()
    interest_before = hub.redis.zrange("interest", 0, -1)
    encoded = quote(symbol, safe="")
    with httpx.Client(base_url=hub.api.http, timeout=WAIT) as http:
        if symbol.strip():
            for url in (f"/tickers/{encoded}", f"/tickers/{encoded}/history"):
                response = http.get(url)
                assert response.status_code in (404, 422), (url, response.status_code)
    assert hub.keys() - keys_before <= later_keys(interest_before)
    assert hub.redis.zrange("interest", 0, -1) == interest_before
    assert {k.decode() for k in hub.redis.hkeys("prices")} <= set(TICKERS) | {
        m.decode() for m in interest_before
    }
    assert hub.api.alive


async def test_hostile_symbols_in_ws_messages_create_no_interest(hub: Hub) -> None:
    keys_before = hub.keys()
    interest_before = hub.redis.zrange("interest", 0, -1)
    async with websockets.connect(f"{hub.api.ws}/ws/prices", open_timeout=WAIT) as ws:
        await asyncio.wait_for(ws.recv(), WAIT)  # snapshot
        for action in ("watchlist", "subscribe"):
            for symbol in HOSTILE_SYMBOLS:
                await ws.send(orjson.dumps({action: [symbol]}).decode())
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
                while reply.get("type") == "diff":
                    reply = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert reply["type"] == "error", (action, symbol, reply)
                assert reply["code"] == "bad_symbol", reply
        await asyncio.sleep(1.0)  # a round of the interest registry would have run
    assert hub.keys() - keys_before <= later_keys(interest_before)
    assert hub.redis.zrange("interest", 0, -1) == interest_before
