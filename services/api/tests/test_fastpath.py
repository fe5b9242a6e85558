"""The direct frame path: framing, and the Flusher writing dirty connections."""

from __future__ import annotations

import asyncio

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.fastpath import FastChannel, text_frame
from tickerhub_api.stream.flusher import Flusher
from tickerhub_api.stream.protocol import CloseCode
from tickerhub_api.stream.senders import FastSender


def parse(data: bytes) -> list[Frame]:
    """Frames as a client parses them (websockets' own parser, unmasked server frames)."""
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    while reader.buffer:
        gen = Frame.parse(reader.read_exact, mask=False)
        try:
            next(gen)
        except StopIteration as done:
            frames.append(done.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frame_is_what_a_client_parses(size: int) -> None:
    payload = ("é" * size).encode()[:size] if size else b""
    payload = payload.decode(errors="ignore").encode()
    [frame] = parse(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data == payload


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing


class FakeChannel(FastChannel):
    """A real FastChannel over a fake transport (no uvicorn protocol behind it)."""

    def __init__(self) -> None:
        super().__init__(lambda _event: None, lambda: False)
        self.transport = self.fake = FakeTransport()
        self.interrupts = 0

    def interrupt(self) -> None:
        self.interrupts += 1

    @property
    def writes(self) -> list[bytes]:
        return self.fake.writes


def make(flusher: Flusher) -> tuple[Connection, FakeChannel]:
    conn = Connection(max_frames=4)
    channel = FakeChannel()
    conn.sender = FastSender(conn, channel, flusher)
    return conn, channel


async def test_one_write_per_connection_per_turn_and_shared_bytes() -> None:
    flusher = Flusher()
    (a, ch_a), (b, ch_b) = make(flusher), make(flusher)
    data = {"A": {"symbol": "A", "seq": 1}}
    shared = '{"type":"diff","seq":1,"data":{"A":{"symbol":"A","seq":1}}}'
    for conn in (a, b):
        conn.send_frame("pong")
        conn.outbox.push_diff(1, None, data, shared)
        conn.wake()
    assert ch_a.writes == []  # nothing is written synchronously
    await asyncio.sleep(0)
    assert flusher.flushes == 1
    assert flusher.writes == 2
    assert len(ch_a.writes) == len(ch_b.writes) == 1
    assert [f.data for f in parse(ch_a.writes[0])] == [b"pong", shared.encode()]
    assert ch_a.writes[0] == ch_b.writes[0]


async def test_paused_transport_conflates_then_resumes() -> None:
    flusher = Flusher()
    conn, channel = make(flusher)
    channel.paused_at = 1.0
    for seq in (1, 2, 3):
        conn.outbox.push_diff(seq, None, {"A": {"symbol": "A", "seq": seq, "price": seq}})
        conn.wake()
        await asyncio.sleep(0)
    assert channel.writes == []
    assert conn.stuck(now=100.0, timeout=30.0)
    channel.paused_at = None
    assert channel.on_writable is not None
    channel.on_writable()  # what resume_writing calls
    await asyncio.sleep(0)
    [frame] = parse(channel.writes[0])
    assert b'"seq":3' in frame.data
    assert b'"price":3' in frame.data  # the latest value, once
    assert not conn.stuck(now=100.0, timeout=30.0)


async def test_close_interrupts_the_route_once_and_stops_writes() -> None:
    flusher = Flusher()
    conn = Connection(max_frames=1)
    channel = FakeChannel()
    conn.sender = FastSender(conn, channel, flusher)
    conn.send_frame("one")
    conn.send_frame("two")  # over the bound of 1: slow client
    conn.close(CloseCode.GOING_AWAY)  # a later close changes nothing
    assert conn.close_code == CloseCode.SLOW_CLIENT
    assert channel.interrupts == 1
    await asyncio.sleep(0)
    assert channel.writes == []  # a closing connection gets no more data
    assert flusher.writes == 0


async def test_closed_transport_gets_no_writes() -> None:
    flusher = Flusher()
    conn, channel = make(flusher)
    channel.fake.closing = True
    conn.send_frame("pong")
    await asyncio.sleep(0)
    channel.transport = None  # the app sent its close frame
    conn.send_frame("pong")
    await asyncio.sleep(0)
    assert channel.writes == []
