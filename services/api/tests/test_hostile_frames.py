"""Clients that misbehave after the handshake: invalid UTF-8, never reading.

Raw sockets on 127.0.0.1 against the api as a subprocess, so the test controls
every byte (a WebSocket library would refuse to send invalid UTF-8).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import struct
import subprocess
from typing import Any

import orjson
import pytest

from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.wait import WAIT, eventually

from .conftest import Producer

pytestmark = pytest.mark.integration


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A final client frame (masked, as RFC 6455 requires; a zero mask keeps the payload)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    return head + b"\0\0\0\0" + payload


def handshake(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws/prices HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head
    return sock


def close_code(sock: socket.socket) -> int | None:
    """Read frames until a close frame: its code (None if the socket just ends)."""
    data = b""
    while True:
        while len(data) >= 2:
            length, offset = data[1] & 0x7F, 2
            if length == 126:
                (length,), offset = struct.unpack("!H", data[2:4]), 4
            elif length == 127:
                (length,), offset = struct.unpack("!Q", data[2:10]), 10
            if len(data) < offset + length:
                break
            if data[0] & 0x0F == 0x8:
                return int(struct.unpack("!H", data[offset : offset + 2])[0])
            data = data[offset + length :]
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk


async def test_invalid_utf8_gets_1007_and_no_traceback(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url)
    for _ in range(20):
        sock = await asyncio.to_thread(handshake, api.port)
        sock.sendall(client_frame(b'{"watchlist": ["\xff\xfe"]}'))
        assert await asyncio.to_thread(close_code, sock) == 1007
        sock.close()
    output = api.output()
    assert "Traceback" not in output
    assert " ERROR " not in output
    assert 1 <= output.count("invalid UTF-8") <= 2  # one line a minute, with a count


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
async def test_a_client_that_does_not_read_is_closed_4008_and_its_buffer_bounded(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    """Replies pile up for a client that never reads: closed with 4008 and a log line;
    meanwhile the kernel send buffer of its socket is SOCKET_SEND_BUFFER (doubled)."""
    api = start_api(
        procs,
        redis_server.url,
        WS_SEND_QUEUE_BOUND="4",
        WS_MAX_MESSAGES_PER_SECOND="0",
        SOCKET_SEND_BUFFER="32768",
    )
    sock = await asyncio.to_thread(handshake, api.port, 4096)
    watchlist = orjson.dumps({"watchlist": [f"S{i:03d}" for i in range(500)]})
    ss = await asyncio.to_thread(
        subprocess.run,
        ["ss", "-tmnH", "state", "established", f"( sport = :{api.port} )"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert re.findall(r"\btb(\d+)", ss.stdout) == ["65536"], ss.stdout
    sock.setblocking(False)
    sent = 0
    with_room = True
    while with_room and sent < 2000:  # each reply ~4 KiB: far more than the buffers hold
        try:
            sock.send(client_frame(watchlist))
            sent += 1
        except BlockingIOError:
            with_room = False  # the api stopped reading us (it closed, or is behind)
    await eventually(
        lambda: "too many unread replies (WS_SEND_QUEUE_BOUND)" in api.output(),
        "the 4008 log line",
        detail=api.output,
    )
    sock.settimeout(WAIT)
    assert await asyncio.to_thread(close_code, sock) == 4008
    sock.close()
