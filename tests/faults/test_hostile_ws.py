"""Hostile WebSocket input against a running api (property-based, bounded example counts).

Every bad frame gets ``{"type": "error", "code", "message"}`` and the connection
stays open, except frames over ``WS_MAX_FRAME_BYTES`` (close 1009). The process
never crashes, a well-behaved client keeps receiving diffs, memory stays bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tickerhub_core.symbols import is_valid_symbol
from tickerhub_testkit.processes import ApiProcess, ServiceProcess
from tickerhub_testkit.wait import eventually_blocking

from .conftest import poller_process

pytestmark = pytest.mark.integration

MAX_SYMBOLS = 50
MAX_FRAME = 8192
ACTIONS = ("watchlist", "subscribe", "unsubscribe")
ERROR_CODES = {"bad_json", "bad_message", "bad_type", "bad_symbol", "too_many_symbols"}
ENDPOINTS = ("/ws/prices", "/ws/news")
WAIT = 20.0

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


class Watcher(threading.Thread):
    """A well-behaved /ws/prices client in a thread, counting the diffs it gets."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.ws = connect(url, open_timeout=WAIT, max_size=None)
        self.diffs = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for frame in self.ws:
                if orjson.loads(frame).get("type") == "diff":
                    self.diffs += 1
        except ConnectionClosed as exc:
            self.error = exc

    def wait_more(self, than: int) -> None:
        def more() -> bool:
            assert self.error is None, f"the well-behaved client was closed: {self.error}"
            return self.diffs > than

        eventually_blocking(more, "diffs for the well-behaved client", limit=WAIT)


class Hub:
    def __init__(self, api: ApiProcess, watcher: Watcher) -> None:
        self.api = api
        self.watcher = watcher
        self.process = psutil.Process(api.pid)

    def check_alive(self) -> None:
        assert self.api.alive, self.api.output()
        assert httpx.get(f"{self.api.http}/healthz", timeout=WAIT).status_code == 200
        diffs = self.watcher.diffs
        self.watcher.wait_more(diffs)
        assert "Traceback" not in self.api.output(), self.api.output()

    def connect(self, path: str) -> ClientConnection:
        ws = connect(f"{self.api.ws}{path}", open_timeout=WAIT, max_size=None)
        first = orjson.loads(ws.recv(timeout=WAIT))
        assert first["type"] == "snapshot"
        return ws


@pytest.fixture
def hub(redis_server: Any) -> Iterator[Hub]:
    started: list[ServiceProcess] = [
        poller_process(redis_server.url, POLL_FREQ="0.1").start(),
    ]
    api = ApiProcess(
        redis_server.url,
        WS_MAX_SYMBOLS=str(MAX_SYMBOLS),
        WS_MAX_FRAME_BYTES=str(MAX_FRAME),
        # Off: these tests need every frame processed (the rate limit is the api's own test).
        WS_MAX_MESSAGES_PER_SECOND="0",
        LOG_LEVEL="WARNING",
    ).start()
    started.append(api)
    watcher: Watcher | None = None
    try:
        api.wait_ready()
        watcher = Watcher(f"{api.ws}/ws/prices")
        watcher.start()
        watcher.wait_more(0)
        yield Hub(api, watcher)
    finally:
        if watcher is not None:
            watcher.ws.close()
        for proc in reversed(started):
            proc.stop()


def exchange(ws: ClientConnection, frame: str | bytes) -> list[Any]:
    """Send ``frame`` then ``ping``; return what came back before the matching ``pong``
    (diffs and news from the stream itself left out)."""
    ws.send(frame)
    ws.send("ping")
    pongs = 2 if isinstance(frame, str) and frame.strip() == "ping" else 1
    replies: list[Any] = []
    deadline = time.monotonic() + WAIT
    while pongs:
        assert time.monotonic() < deadline, "no pong"
        raw = ws.recv(timeout=WAIT)
        if raw == "pong":
            pongs -= 1
            continue
        message = orjson.loads(raw)
        if message.get("type") in ("diff", "news"):
            continue
        replies.append(message)
    return replies


def assert_error(replies: list[Any], codes: set[str] = ERROR_CODES) -> dict[str, Any]:
    assert len(replies) == 1, replies
    (reply,) = replies
    assert set(reply) == {"type", "code", "message"}, reply
    assert reply["type"] == "error"
    assert reply["code"] in codes, reply
    assert isinstance(reply["message"], str)
    assert len(reply["message"]) < 500  # user input is echoed only in bounded form
    return reply


def expected_code(value: Any) -> str | None:
    """The protocol's answer to a JSON value (docs/protocol.md); ``None`` means accepted."""
    if not isinstance(value, dict):
        return "bad_message"
    keys = [k for k in value if k in ACTIONS]
    if len(keys) != 1 or len(value) != 1:
        return "bad_message"
    action = keys[0]
    symbols = value[action]
    if symbols is None and action == "watchlist":
        return None
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        return "bad_type"
    if len(symbols) > MAX_SYMBOLS:
        return "too_many_symbols"
    if not all(is_valid_symbol(s.strip().upper()) for s in symbols):
        return "bad_symbol"
    return None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson encodes
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
plausible = st.from_regex(r"\A[A-Za-z]{1,5}\Z")
wrong_types = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=10),
    st.dictionaries(st.text(max_size=5), st.integers(0, 9), max_size=3),
    st.lists(st.integers(0, 9) | st.none() | st.lists(st.text(max_size=3)), min_size=1, max_size=5),
    st.lists(plausible, max_size=3).flatmap(
        lambda good: st.lists(
            st.integers(0, 9) | st.none() | st.booleans(), min_size=1, max_size=3
        ).map(lambda bad: [*good, *bad])
    ),
)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_arbitrary_text(hub: Hub, path: str) -> None:
    ws = hub.connect(path)

    @HYPOTHESIS
    @given(st.text(max_size=300))
    def check(text: str) -> None:
        replies = exchange(ws, text)
        if text.strip() == "ping":
            assert replies == []
            return
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            assert assert_error(replies)["code"] == "bad_json"
            return
        code = expected_code(value)
        if code is not None:
            assert assert_error(replies)["code"] == code

    check()
    hub.check_alive()
    ws.close()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_arbitrary_json(hub: Hub, path: str) -> None:
    ws = hub.connect(path)

    @HYPOTHESIS
    @given(
        json_values
        | st.dictionaries(st.sampled_from(ACTIONS) | st.text(max_size=8), json_values, max_size=3)
    )
    def check(value: Any) -> None:
        replies = exchange(ws, orjson.dumps(value).decode())
        code = expected_code(value)
        if code is None:
            assert len(replies) == 1, replies
            assert replies[0]["type"] in ("snapshot", "unsubscribed"), replies
        else:
            assert assert_error(replies)["code"] == code

    check()
    hub.check_alive()
    ws.close()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_right_keys_wrong_types(hub: Hub, path: str) -> None:
    ws = hub.connect(path)
    assert exchange(ws, '{"watchlist": ["AAPL"]}')[0]["type"] == "snapshot"

    @HYPOTHESIS
    @given(st.sampled_from(ACTIONS), wrong_types)
    def check(action: str, value: Any) -> None:
        replies = exchange(ws, orjson.dumps({action: value}).decode())
        assert_error(replies, {"bad_type"})

    check()
    # The errors changed nothing: the watchlist is still AAPL.
    replies = exchange(ws, '{"subscribe": []}')
    assert replies[-1]["watchlist"] == ["AAPL"], replies
    hub.check_alive()
    ws.close()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_huge_symbol_lists(hub: Hub, path: str) -> None:
    ws = hub.connect(path)
    too_many = [f"S{i}" for i in range(MAX_SYMBOLS + 1)]
    for action in ACTIONS:
        assert_error(exchange(ws, orjson.dumps({action: too_many}).decode()), {"too_many_symbols"})
    fine = [f"S{i}" for i in range(MAX_SYMBOLS)]
    replies = exchange(ws, orjson.dumps({"watchlist": fine}).decode())
    assert replies[0].get("type") == "snapshot", replies
    assert replies[0]["watchlist"] == sorted(fine)
    # Subscribing one more would exceed the limit.
    assert_error(exchange(ws, '{"subscribe": ["ONEMORE"]}'), {"too_many_symbols"})
    # A list that is huge in bytes but under the frame limit: one bad symbol spoils it.
    bad = orjson.dumps({"watchlist": ["A" * 40] * 150}).decode()
    assert len(bad) < MAX_FRAME
    assert_error(exchange(ws, bad), {"too_many_symbols", "bad_symbol"})
    hub.check_alive()
    ws.close()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_binary_frames(hub: Hub, path: str) -> None:
    ws = hub.connect(path)

    @HYPOTHESIS
    @given(st.binary(max_size=200) | st.just(b"ping") | st.just(b'{"watchlist": ["AAPL"]}'))
    def check(data: bytes) -> None:
        assert_error(exchange(ws, data), {"binary_not_supported"})

    check()
    hub.check_alive()
    ws.close()


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("kind", ["text", "binary", "json"])
def test_oversized_frames_close_with_1009(hub: Hub, path: str, kind: str) -> None:
    ws = hub.connect(path)
    frame: str | bytes = {
        "text": "x" * (MAX_FRAME + 1),
        "binary": b"\x00" * (MAX_FRAME + 1),
        "json": orjson.dumps({"watchlist": ["AAPL"] * (MAX_FRAME // 6)}).decode(),
    }[kind]
    ws.send(frame)
    deadline = time.monotonic() + WAIT
    with pytest.raises(ConnectionClosed) as info:  # noqa: PT012
        while time.monotonic() < deadline:
            ws.recv(timeout=WAIT)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    hub.check_alive()
    # Others, and new connections, are fine.
    again = hub.connect(path)
    assert exchange(again, "ping") == []
    again.close()


def test_many_bad_messages_do_not_grow_memory(hub: Hub) -> None:
    """Thousands of bad frames (of every kind) on a few connections: RSS levels off."""
    bad_frames: list[str | bytes] = [
        "hello",
        "[1, 2, 3]",
        '{"watchlist": "AAPL"}',
        '{"subscribe": [1, 2]}',
        '{"unsubscribe": ["no way", "x" ]}',
        orjson.dumps({"watchlist": [f"S{i}" for i in range(MAX_SYMBOLS + 1)]}).decode(),
        orjson.dumps({"k" * 50: list(range(200))}).decode(),
        b"\x00\x01binary",
        "\u0000\ud7ff" * 100,
    ]
    sockets = [hub.connect("/ws/prices"), hub.connect("/ws/news")]

    def round_(n: int) -> None:
        for ws in sockets:
            for _ in range(n):
                for frame in bad_frames:
                    ws.send(frame)
                # Read the answers so the server's outbox for us does not fill up.
                ws.send("ping")
                while ws.recv(timeout=WAIT) != "pong":
                    pass

    round_(60)  # warm up: allocator, code paths
    before = hub.process.memory_info().rss
    for _ in range(4):
        round_(60)
    grown = hub.process.memory_info().rss - before
    # 4 x 60 x 9 x 2 = 4320 bad frames: a per-message leak of even 1 KiB would show.
    assert grown < 3 * 1024 * 1024, f"RSS grew by {grown} bytes"
    hub.check_alive()
    for ws in sockets:
        ws.close()
