"""`make start` end to end, as a new user runs it (see conftest.py for when it runs).

A fresh copy of the repository with a `.env` made from `.env.example` (simulated
quotes, a few tickers, and the `HEARTBEAT_FILE=` line older `.env` files have):
`make start`, every service healthy, REST and a WebSocket client, non-root
containers, a Redis restart ridden out, then `make stop`: exit 0 everywhere and the
client told 1001. Bounds below only keep a broken stack from hanging the suite.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import websockets

from .conftest import REPLICAS, SERVICES, Stack

pytestmark = [pytest.mark.compose, pytest.mark.integration, pytest.mark.timeout(1200)]

TICKERS = ("AAPL", "MSFT", "BTC-USD")
HEALTHY_WITHIN = 300.0  # first build on a loaded 2-core machine included
WAIT = 60.0


def user_env(example: str) -> str:
    """.env.example as a user edits it; plus the empty HEARTBEAT_FILE= old copies carry."""
    wanted = {"SOURCE": "simulated", "TICKERS": ",".join(TICKERS), "POLL_FREQ": "0.5"}
    lines = []
    for line in example.splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={wanted.pop(key)}" if key in wanted else line)
    assert not wanted, f".env.example lacks {wanted}"
    return "\n".join([*lines, "HEARTBEAT_FILE=", ""])


class Client:
    """A /ws/prices client following docs/protocol.md: snapshots replace, diffs merge."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.quotes: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self.kinds: list[str] = []
        self.error: websockets.ConnectionClosed | None = None  # a close other than 1000/1001
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        try:
            async for frame in self.ws:
                message = orjson.loads(frame) if frame != "pong" else {"type": "pong"}
                kind = message.get("type")
                self.kinds.append(kind)
                if kind == "snapshot":
                    if not message.get("partial"):
                        self.quotes = {}
                    self.quotes.update({s: dict(q) for s, q in message["data"].items()})
                elif kind == "diff":
                    for symbol, fields in message["data"].items():
                        self.quotes.setdefault(symbol, {}).update(fields)
                if kind in {"snapshot", "diff"}:
                    self.seq = message["seq"]
        except websockets.ConnectionClosed as exc:  # 1000 and 1001 end the loop instead
            self.error = exc

    @property
    def open(self) -> bool:
        return not self.task.done()

    @property
    def close_code(self) -> int | None:
        """The code in the server's close frame (1006 when none came, None while open)."""
        return self.ws.close_code


async def wait_for(
    condition: Callable[[], Any], what: str, stack: Stack, limit: float = WAIT
) -> None:
    deadline = time.monotonic() + limit
    while not ((await result) if asyncio.iscoroutine(result := condition()) else result):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{stack.logs()}")
        await asyncio.sleep(0.2)


async def converged(http: httpx.AsyncClient, client: Client) -> bool:
    """The client's view equals GET /tickers read at the same seq (the poller keeps moving)."""
    try:
        response = await http.get("/tickers")
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    return (
        int(response.headers["X-TickerHub-Seq"]) == client.seq
        and response.json() == client.quotes
        and set(client.quotes) == set(TICKERS)
    )


def root_processes(stack: Stack, service: str) -> list[str]:
    """The service containers' processes running as root (numeric uid, as the host sees
    it); every replica's (the pollers are two)."""
    containers = stack.compose("ps", "-q", service).stdout.split()
    assert len(containers) == REPLICAS[service], containers
    found = []
    for container in containers:
        top = stack.run("docker", "top", container, "-eo", "pid,uid,args", check=True).stdout
        rows = [line.split(None, 2) for line in top.splitlines()[1:] if line.strip()]
        assert rows, f"no processes in {service}: {top}"
        found += [" ".join(row) for row in rows if row[1] == "0"]
    return found


async def test_make_start_serves_rides_out_a_redis_restart_and_make_stop_ends_cleanly(
    stack: Stack,
) -> None:
    (stack.dir / ".env").write_text(user_env((stack.dir / ".env.example").read_text()))

    started = time.monotonic()
    start = await asyncio.to_thread(stack.run, "make", "start", timeout=900)
    assert start.returncode == 0, f"make start failed:\n{start.stdout}\n{start.stderr}"
    built = time.monotonic()
    await stack.wait_healthy(HEALTHY_WITHIN)
    print(
        f"\ncompose: make start {built - started:.0f} s, healthy {time.monotonic() - built:.0f} s later"
    )

    async with httpx.AsyncClient(base_url=stack.http, timeout=10) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["redis"] is True
        tickers = await http.get("/tickers")
        assert tickers.status_code == 200
        assert set(tickers.json()) == set(TICKERS)
        assert all(q["price"] is not None for q in tickers.json().values())

        for service in ("poller", "api"):  # our images: USER tickerhub, in every process
            assert stack.compose("exec", "-T", service, "id", "-u").stdout.strip() != "0"
        for service in SERVICES:
            assert root_processes(stack, service) == [], f"{service} runs processes as root"

        ws = await websockets.connect(f"{stack.ws}/ws/prices", open_timeout=WAIT)
        client = Client(ws)
        try:
            await wait_for(lambda: client.kinds[:1] == ["snapshot"], "a snapshot", stack)
            await wait_for(lambda: client.kinds.count("diff") >= 3, "diffs", stack)
            await wait_for(lambda: converged(http, client), "the client to match /tickers", stack)

            seq_before = client.seq
            await asyncio.to_thread(stack.compose, "restart", "redis", timeout=120)
            # Redis comes back empty; the poller writes its snapshot back, the api reloads,
            # and the same connection carries on to the same state as REST.
            await wait_for(
                lambda: client.seq > seq_before and client.open,
                "updates after the Redis restart", stack,
            )  # fmt: skip
            await wait_for(lambda: converged(http, client), "convergence after restart", stack)
            assert client.open, client.error
            await stack.wait_healthy(HEALTHY_WITHIN)

            # make stop, with the client still connected; watch the containers die.
            events = await asyncio.create_subprocess_exec(
                "docker", "events", "--format", "{{json .}}", "--filter", "event=die",
                "--filter", f"label=com.docker.compose.project={stack.project}",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                await asyncio.sleep(1.0)  # docker events is subscribed
                stop = await asyncio.to_thread(stack.run, "make", "stop", timeout=180)
                await asyncio.sleep(1.0)
            finally:
                events.terminate()
                died = (await asyncio.wait_for(events.communicate(), 10))[0].decode()
            assert stop.returncode == 0, f"make stop failed:\n{stop.stdout}\n{stop.stderr}"
            await asyncio.wait_for(client.task, WAIT)
        finally:
            client.task.cancel()
            await ws.close()

    assert client.close_code == 1001, (client.close_code, client.error)
    exits: dict[str, list[str]] = {}
    for line in died.splitlines():
        attributes = json.loads(line)["Actor"]["Attributes"]
        exits.setdefault(attributes["com.docker.compose.service"], []).append(
            attributes["exitCode"]
        )
    assert exits == {s: ["0"] * n for s, n in REPLICAS.items()}, exits
    assert stack.containers() == []
