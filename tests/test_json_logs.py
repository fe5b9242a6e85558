"""``LOG_FORMAT=json``: both services, as subprocesses, log one JSON object per line, with
the documented fields, uvicorn's access and error logs included, and no API key anywhere."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
import websockets
from redis.asyncio import Redis

from tickerhub_testkit.net import free_port, wait_for_port
from tickerhub_testkit.processes import Procs, ServiceProcess, poller_process, start_api
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.ws import recv

pytestmark = pytest.mark.integration

KEY = "json-log-secret-key-0123456789abcdef"
WRONG = "json-log-wrong-key-9876543210fedcba"


def json_lines(proc: ServiceProcess) -> list[dict[str, Any]]:
    """Every line of the process's output, each parsed as a JSON object (fails otherwise)."""
    entries = []
    for line in proc.output().splitlines():
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(entry, dict), line
        for field in ("ts", "level", "logger", "msg"):
            assert field in entry, f"{field} missing in {line}"
        entries.append(entry)
    return entries


async def test_api_json_logs_parse_carry_fields_and_never_a_key(
    redis_server: Any, procs: Procs
) -> None:
    client = Redis.from_url(redis_server.url)
    await Producer(client).publish({"AAPL": {"price": 1.0}})
    await client.aclose()
    api = start_api(procs, redis_server.url, API_KEYS=KEY, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    async with httpx.AsyncClient() as http:
        # REST takes keys from headers only; a key in the URL is refused, and never logged.
        assert (await http.get(f"{api.http}/tickers?api_key={KEY}")).status_code == 401
        assert (
            await http.get(f"{api.http}/tickers", headers={"X-API-Key": KEY})
        ).status_code == 200
        assert (
            await http.get(f"{api.http}/tickers", headers={"Authorization": f"Bearer {WRONG}"})
        ).status_code == 401
    async with websockets.connect(f"{api.ws}/ws/prices?api_key={KEY}") as ws:
        assert (await recv(ws))["type"] == "snapshot"
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await ws.send(orjson.dumps({"auth": KEY}).decode())
        assert (await recv(ws))["type"] == "snapshot"
    async with websockets.connect(f"{api.ws}/ws/prices?api_key={WRONG}") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await recv(ws)
    await asyncio.sleep(0.5)  # let the last lines reach the log
    api.stop()

    text = api.output()
    assert KEY not in text
    assert WRONG not in text
    entries = json_lines(api)
    loggers = {e["logger"] for e in entries}
    assert {"uvicorn.error", "uvicorn.access", "tickerhub_api.__main__"} <= loggers
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    keyed = [e for e in access if e.get("path", "").startswith("/tickers?")]
    assert keyed, access
    for entry in keyed:
        assert entry["path"] == "/tickers?api_key=***"
        assert entry["method"] == "GET"
        assert entry["status"] == 401
        assert entry["peer"].startswith("127.0.0.1:")
    assert {e["status"] for e in access if e.get("path") == "/tickers"} == {200, 401}
    refused = [e for e in entries if e["msg"].startswith("refused a WebSocket")]
    assert refused, "the refused WebSocket is logged"
    assert refused[0]["code"] == 1008
    assert refused[0]["peer"].startswith("127.0.0.1:")
    assert {e["level"] for e in entries} >= {"INFO", "DEBUG"}
    assert not any("color_message" in e for e in entries)  # uvicorn's coloured duplicate


def test_poller_json_logs(redis_server: Any, procs: Procs) -> None:
    port = free_port()
    proc = procs(
        poller_process(redis_server.url, ["AAPL"], LOG_FORMAT="json", METRICS_PORT=str(port))
    )
    proc.wait_for_output("polling", timeout=30)
    wait_for_port(port, timeout=30)
    assert proc.stop() == 0
    entries = json_lines(proc)
    messages = [e["msg"] for e in entries]
    assert any(m.startswith("polling 1 tickers") for m in messages), messages
    assert any(e["logger"] == "tickerhub_core.metrics" for e in entries)
    assert all(e["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"} for e in entries)
