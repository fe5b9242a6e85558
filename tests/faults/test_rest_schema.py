"""REST against its own OpenAPI schema (schemathesis): no 500s. Symbol injection finds no key.

The history endpoint asks Yahoo, which this machine cannot reach: it must answer
502/503/404/422, never 500, and it gets few cases since each may wait for a timeout.

This hub runs with ``ON_DEMAND=false`` (both services): the fixed-list hub, where no REST
request may create a Redis key. With symbols on demand a valid symbol the hub does not
hold registers interest, by design; ``test_on_demand_schema.py`` fuzzes that hub and
allows exactly the documented on-demand keys (hostile symbols still create nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import redis
import schemathesis
import websockets
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tickerhub_testkit.processes import ApiProcess, ServiceProcess
from tickerhub_testkit.wait import eventually_blocking

from .conftest import TICKERS, poller_process

pytestmark = pytest.mark.integration

WAIT = 30.0
HOSTILE_SYMBOLS = [
    "prices:seq",
    "*",
    "AAPL*",
    "news:items",
    "AAPL\r\nFLUSHALL",
    "AAPL\nFLUSHALL\n",
    "AAPL FLUSHALL",
    "AAPL\x00",
    "../../etc/passwd",
    "A" * 500,
    "%0d%0aFLUSHALL",
    "AAPL,MSFT",
    "$(reboot)",
    "AAPL;DEL prices",
    "\u212aAPL",  # Kelvin sign: upper() gives an ASCII-looking K
    "\u0130BM",
    "",
    " ",
]


class Hub:
    def __init__(self, api: ApiProcess, url: str) -> None:
        self.api = api
        self.redis = redis.Redis.from_url(url)

    def keys(self) -> set[bytes]:
        return set(self.redis.keys("*"))


@contextlib.contextmanager
def run_hub(
    session_redis: Any,
    ready: Callable[[Hub], bool],
    what: str,
    poller_env: dict[str, str],
    api_env: dict[str, str],
) -> Iterator[Hub]:
    """A poller (simulated, quiet) and an api on the emptied session Redis, until
    ``ready(hub)``; both stopped on the way out."""
    session_redis.start()
    session_redis.flush()
    procs: list[ServiceProcess] = [
        poller_process(
            session_redis.url, SIM_VOLATILITY="0", NEWS_INTERVAL="3600", **poller_env
        ).start()
    ]
    api = ApiProcess(
        session_redis.url, WS_MAX_MESSAGES_PER_SECOND="0", LOG_LEVEL="WARNING", **api_env
    ).start()
    procs.append(api)
    try:
        api.wait_ready()
        hub = Hub(api, session_redis.url)
        eventually_blocking(lambda: ready(hub), what)
        yield hub
        hub.redis.close()
    finally:
        for proc in reversed(procs):
            proc.stop()


@pytest.fixture(scope="module")
def hub(_session_redis: Any) -> Iterator[Hub]:
    fixed = {"ON_DEMAND": "false"}
    with run_hub(
        _session_redis,
        lambda hub: hub.redis.hlen("prices") == len(TICKERS) and hub.redis.zcard("news") > 0,
        "prices and news in Redis",
        poller_env=fixed,
        api_env=fixed,
    ) as hub:
        yield hub


def operations(hub: Hub) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{hub.api.http}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_lists_the_documented_endpoints(hub: Hub) -> None:
    paths = {op.path for op in operations(hub)}
    assert paths >= {
        "/tickers",
        "/tickers/{symbol}",
        "/tickers/{symbol}/history",
        "/news",
        "/healthz",
        "/readyz",
        "/status",
    }


WITH_PARAMETERS = ("/tickers/{symbol}", "/news", "/tickers/{symbol}/history")
CASES = [
    *[(path, GenerationMode.POSITIVE) for path in ("/tickers", "/healthz", "/readyz", "/status")],
    # Negative data (schema-violating parameters) only exists where there are parameters.
    *[(path, mode) for path in WITH_PARAMETERS for mode in GenerationMode],
]


@pytest.mark.parametrize(("path", "mode"), CASES, ids=[f"{p}-{m.value}" for p, m in CASES])
def test_no_server_errors(hub: Hub, path: str, mode: GenerationMode) -> None:
    operation = next(op for op in operations(hub) if op.path == path and op.method == "get")
    history = path.endswith("/history")
    keys_before = hub.keys()
    seen: list[int] = []

    @settings(
        max_examples=6 if history else 50,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def check(case: Any) -> None:
        response = case.call(base_url=hub.api.http, timeout=WAIT)
        seen.append(response.status_code)
        assert response.status_code < 500 or (history and response.status_code in (502, 503)), (
            f"{case.method} {case.formatted_path} {case.query}: {response.status_code} {response.text[:300]}"
        )
        if response.status_code >= 400:
            body = response.json()
            assert "detail" in body, body

    check()
    assert seen
    assert hub.api.alive, hub.api.output()
    assert hub.keys() == keys_before, "a REST request created Redis keys"
    assert "Traceback" not in hub.api.output(), hub.api.output()


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_hostile_symbols_in_rest_paths_and_queries(hub: Hub, symbol: str) -> None:
    keys_before = hub.keys()
    encoded = quote(symbol, safe="")
    with httpx.Client(base_url=hub.api.http, timeout=WAIT) as http:
        if symbol.strip():
            for url in (f"/tickers/{encoded}", f"/tickers/{encoded}/history"):
                response = http.get(url)
                assert response.status_code in (404, 422), (url, response.status_code)
                if response.status_code == 404 and "/" not in symbol:
                    # 404 is only right for a well-formed symbol the hub does not hold
                    # (or a path the router does not match, when the symbol has a '/').
                    assert "unknown symbol" in response.json()["detail"], response.text
        response = http.get("/news", params={"symbols": symbol})
        if symbol.strip() and "," not in symbol:
            assert response.status_code == 422, (symbol, response.status_code, response.text)
        else:
            assert response.status_code in (200, 422), response.status_code
    assert hub.keys() == keys_before
    assert hub.redis.hlen("prices") == len(TICKERS)
    assert hub.api.alive


async def test_hostile_symbols_in_ws_messages(hub: Hub) -> None:
    keys_before = hub.keys()
    for path in ("/ws/prices", "/ws/news"):
        async with websockets.connect(f"{hub.api.ws}{path}", open_timeout=WAIT) as ws:
            await asyncio.wait_for(ws.recv(), WAIT)  # snapshot
            for action in ("watchlist", "subscribe", "unsubscribe"):
                for symbol in HOSTILE_SYMBOLS:
                    await ws.send(orjson.dumps({action: [symbol]}).decode())
                    reply = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    while reply.get("type") in ("diff", "news"):
                        reply = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    assert reply["type"] == "error", (path, action, symbol, reply)
                    assert reply["code"] == "bad_symbol", reply
                    assert "\r" not in reply["message"]
                    assert "\n" not in reply["message"]
    assert hub.keys() == keys_before
    assert hub.redis.hlen("prices") == len(TICKERS)
    output = hub.api.output()
    assert "FLUSHALL\n" not in output
    assert "\r\nFLUSHALL" not in output
