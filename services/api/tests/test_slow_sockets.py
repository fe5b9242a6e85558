"""Sockets that never finish a request: idle, dripping header bytes, oversized heads.

The api runs as a subprocess (the ``api`` console script) with a real redis-server;
every client is a raw socket on 127.0.0.1. Counts and time are bounded; the
limits only keep a broken build from hanging, nothing asserts a speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from typing import Any

import httpx
import pytest
import websockets

from tickerhub_testkit.processes import ApiProcess, Procs, start_api
from tickerhub_testkit.wait import WAIT, eventually
from tickerhub_testkit.ws import recv

from .conftest import Producer

pytestmark = pytest.mark.integration

UPGRADE = (
    b"GET /ws/prices HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)


def open_fds(api: ApiProcess) -> int:
    return len(os.listdir(f"/proc/{api.pid}/fd"))


async def read_until_closed(reader: asyncio.StreamReader, limit: float = WAIT) -> bytes:
    """Everything the server sends until it closes the socket."""
    received = b""
    async with asyncio.timeout(limit):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


async def drip(host_port: tuple[str, int], head: bytes, limit: float = WAIT) -> tuple[int, bytes]:
    """Send ``head`` one byte every 0.1 s until the server closes: (bytes sent, its answer)."""
    reader, writer = await asyncio.open_connection(*host_port)
    sent = 0
    try:
        async with asyncio.timeout(limit):
            for byte in head:
                writer.write(bytes((byte,)))
                await writer.drain()
                sent += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        if await reader.read(65536) == b"" or reader.at_eof():
                            return sent, b""
            return sent, await read_until_closed(reader)
    except (ConnectionResetError, BrokenPipeError):
        return sent, b""
    finally:
        writer.close()


async def test_idle_and_dripping_connections_are_closed_after_the_header_timeout(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, HTTP_HEADER_TIMEOUT="1")
    address = ("127.0.0.1", api.port)
    baseline = open_fds(api)

    # 100 idle sockets, each closed by the server without a word.
    idle = [await asyncio.open_connection(*address) for _ in range(100)]
    # 40 dripping a never-ending request head (REST and WebSocket upgrades alike):
    # the deadline is on the whole head, not per byte.
    endless = b"X-Pad: " + b"a" * 5000
    drips = [
        drip(address, (b"GET /tickers HTTP/1.1\r\n" if i % 2 else UPGRADE) + endless)
        for i in range(40)
    ]
    idle_answers, drip_results = await asyncio.gather(
        asyncio.gather(*(read_until_closed(reader) for reader, _ in idle)),
        asyncio.gather(*drips),
    )
    for _, writer in idle:
        writer.close()
    assert idle_answers == [b""] * 100  # sent nothing, got nothing
    for sent, answer in drip_results:
        assert sent < len(endless)  # cut off long before the head could end
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408")

    # The process is back to where it started, and it still serves.
    await eventually(lambda: open_fds(api) <= baseline + 5, "fds back to baseline", limit=WAIT)
    async with httpx.AsyncClient(base_url=api.http) as http:
        assert (await http.get("/healthz")).status_code == 200
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        assert (await recv(ws))["type"] == "snapshot"
    # One warning for the lot (rate-limited), not one per socket.
    lines = [line for line in api.output().splitlines() if "no complete request head" in line]
    assert 1 <= len(lines) <= 2, api.output()
    assert "WARNING" in lines[0]


async def test_a_kept_alive_connection_gets_the_deadline_for_each_head(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, HTTP_HEADER_TIMEOUT="1")
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert first.startswith(b"HTTP/1.1 200")
    await reader.readexactly(int(first.split(b"content-length: ")[1].split(b"\r\n")[0]))
    # The next head starts, then stalls: 408 and closed (uvicorn's keep-alive timer
    # stops once a byte arrives, so only the head deadline ends this).
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    answer = await read_until_closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")


async def test_a_head_over_the_size_bound_gets_431(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, HTTP_HEADER_TIMEOUT="60")
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(b"GET /tickers HTTP/1.1\r\n")
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        for i in range(400):  # 400 KiB of headers, within one head: still writing when refused
            writer.write(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000))
            await writer.drain()
    answer = await read_until_closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize("fast", ["true", "false"], ids=["fast-path", "asgi-path"])
async def test_an_oversized_handshake_header_gets_431_and_is_closed(
    fast: str, redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    """websockets refuses a header line over 8 KiB and prepares a 431, which uvicorn
    0.54 never sends nor follows with a close. A deadline far away: only the fix
    closes these."""
    api = start_api(procs, redis_server.url, HTTP_HEADER_TIMEOUT="120", WS_FAST_PATH=fast)
    baseline = open_fds(api)
    request = UPGRADE + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n"

    async def oversized() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(request)
        try:
            return await read_until_closed(reader)
        finally:
            writer.close()

    answers: list[bytes] = []
    for _ in range(4):  # 200 sockets, 50 at a time
        answers += await asyncio.gather(*(oversized() for _ in range(50)))
    assert all(answer.startswith(b"HTTP/1.1 431") for answer in answers), answers[0]
    await eventually(lambda: open_fds(api) <= baseline + 5, "fds back to baseline", limit=WAIT)
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        assert (await recv(ws))["type"] == "snapshot"


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
async def test_running_out_of_file_descriptors_is_logged_and_survived(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    """Past the fd limit uvloop drops new connections without a word: the api warns as
    it gets close, and serves again once the sockets are gone."""
    api = start_api(procs, redis_server.url, HTTP_HEADER_TIMEOUT="60")
    limit = ["prlimit", f"--pid={api.pid}", "--nofile=200:200"]
    await asyncio.to_thread(subprocess.run, limit, check=True)
    sockets = []
    for _ in range(250):
        with contextlib.suppress(OSError, TimeoutError):
            sockets.append(
                await asyncio.wait_for(asyncio.open_connection("127.0.0.1", api.port), 5)
            )
    await eventually(
        lambda: "close to the file-descriptor limit (200)" in api.output(),
        "the fd-limit warning",
        detail=api.output,
    )
    for _, writer in sockets:
        writer.close()
    async with httpx.AsyncClient(base_url=api.http) as http:

        async def healthy() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get("/healthz")).status_code == 200
            return False

        await eventually(healthy, "/healthz once the sockets are closed", detail=api.output)
    lines = [line for line in api.output().splitlines() if "file-descriptor limit (200)" in line]
    assert len(lines) == 1
    assert "WARNING" in lines[0]
