"""The price stream's logic without sockets: replies, fan-out, resync, the sender."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.mirror import Mirror
from tickerhub_api.stream.prices import PriceStream
from tickerhub_api.stream.protocol import CloseCode
from tickerhub_api.stream.senders import AsgiSender

from .conftest import drain, quote


@pytest.fixture
def stream() -> PriceStream:
    mirror = Mirror()
    mirror.load(1, {s: quote(s) for s in ("AAPL", "MSFT", "TSLA")})
    return PriceStream(mirror, max_symbols=3)


async def connect(stream: PriceStream) -> Connection:
    conn = Connection(max_frames=8)
    await stream.attach(conn)
    return conn


async def test_connect_gets_full_snapshot(stream: PriceStream) -> None:
    [snapshot] = drain(await connect(stream))
    assert snapshot["type"] == "snapshot"
    assert snapshot["seq"] == 1
    assert set(snapshot["data"]) == {"AAPL", "MSFT", "TSLA"}


async def test_no_snapshot_before_load_then_one_on_first_load() -> None:
    mirror = Mirror()
    stream = PriceStream(mirror, 3)
    conn = await connect(stream)
    assert drain(conn) == []
    stream.publish_diff(1, 1, {"AAPL": quote("AAPL")})  # not synced: nothing
    assert drain(conn) == []
    mirror.load(4, {"AAPL": quote("AAPL", 4)})
    stream.resync(None)
    [snapshot] = drain(conn)
    assert snapshot["seq"] == 4


async def test_watchlist_reply_and_filtering(stream: PriceStream) -> None:
    conn = await connect(stream)
    drain(conn)
    await stream.handle_text(conn, '{"watchlist": ["aapl", "NEWCO"]}')
    [reply] = drain(conn)
    assert reply["type"] == "snapshot"
    assert set(reply["data"]) == {"AAPL"}
    assert reply["watchlist"] == ["AAPL", "NEWCO"]
    assert reply["unknown"] == ["NEWCO"]
    stream._mirror.apply(2, {"MSFT": quote("MSFT", 2, 3.0), "AAPL": quote("AAPL", 2, 2.0)})
    stream.publish_diff(2, 9, {"MSFT": quote("MSFT", 2, 3.0), "AAPL": quote("AAPL", 2, 2.0)})
    [message] = drain(conn)
    assert message == {"type": "diff", "seq": 2, "ts": 9, "data": {"AAPL": quote("AAPL", 2, 2.0)}}
    # An unknown symbol is delivered once it appears.
    stream.publish_diff(3, 10, {"NEWCO": quote("NEWCO", 3)})
    assert drain(conn)[0]["data"] == {"NEWCO": quote("NEWCO", 3)}


async def test_subscribe_and_unsubscribe(stream: PriceStream) -> None:
    conn = await connect(stream)
    await stream.handle_text(conn, '{"watchlist": ["AAPL"]}')
    drain(conn)
    await stream.handle_text(conn, '{"subscribe": ["msft"]}')
    [reply] = drain(conn)
    assert reply["partial"] is True
    assert set(reply["data"]) == {"MSFT"}
    assert reply["watchlist"] == ["AAPL", "MSFT"]
    await stream.handle_text(conn, '{"unsubscribe": ["AAPL"]}')
    assert drain(conn) == [{"type": "unsubscribed", "symbols": ["AAPL"], "watchlist": ["MSFT"]}]
    stream.publish_diff(2, 1, {"AAPL": quote("AAPL", 2)})
    assert drain(conn) == []


async def test_unsubscribe_from_everything_lists_the_rest(stream: PriceStream) -> None:
    conn = await connect(stream)
    drain(conn)
    await stream.handle_text(conn, '{"unsubscribe": ["TSLA"]}')
    assert drain(conn)[0]["watchlist"] == ["AAPL", "MSFT"]


async def test_errors_keep_the_watchlist(stream: PriceStream) -> None:
    conn = await connect(stream)
    await stream.handle_text(conn, '{"watchlist": ["AAPL", "MSFT"]}')
    drain(conn)
    for bad in ("nope", '{"watchlist": "AAPL"}', '{"subscribe": ["TSLA", "X1", "X2"]}'):
        await stream.handle_text(conn, bad)
        [error] = drain(conn)
        assert error["type"] == "error"
    assert error["code"] == "too_many_symbols"
    assert conn.watch == {"AAPL", "MSFT"}
    await stream.handle_text(conn, "ping")
    assert drain(conn) == ["pong"]


async def test_whole_diff_frame_is_shared(stream: PriceStream) -> None:
    a, b = await connect(stream), await connect(stream)
    await stream.handle_text(b, '{"watchlist": ["AAPL"]}')
    drain(a), drain(b)
    stream.publish_diff(2, 1, {"AAPL": quote("AAPL", 2)})
    assert a.outbox.take() is b.outbox.take()


async def test_resync_only_affected(stream: PriceStream) -> None:
    a, b, c = await connect(stream), await connect(stream), await connect(stream)
    await stream.handle_text(b, '{"watchlist": ["AAPL"]}')
    await stream.handle_text(c, '{"watchlist": ["TSLA"]}')
    for conn in (a, b, c):
        drain(conn)
    stream.publish_diff(2, 1, {"AAPL": quote("AAPL", 2)})
    changed = stream._mirror.load(9, {"AAPL": quote("AAPL", 9, 5.0), "TSLA": quote("TSLA")})
    stream.resync(changed)  # AAPL and MSFT changed (MSFT is gone); TSLA did not
    [snap_a] = drain(a)
    assert snap_a["type"] == "snapshot"
    assert set(snap_a["data"]) == {"AAPL", "TSLA"}
    [snap_b] = drain(b)  # the pending diff was superseded by the snapshot
    assert snap_b == {
        "type": "snapshot",
        "seq": 9,
        "epoch": "",
        "data": {"AAPL": quote("AAPL", 9, 5.0)},
    }
    assert drain(c) == []


async def test_detach_forgets(stream: PriceStream) -> None:
    conn = await connect(stream)
    await stream.handle_text(conn, '{"watchlist": ["AAPL"]}')
    stream.detach(conn)
    drain(conn)
    stream.publish_diff(2, 1, {"AAPL": quote("AAPL", 2)})
    assert drain(conn) == []
    assert not stream.connections


async def test_sender_sends_in_order_and_conflates_while_blocked() -> None:
    conn = Connection(max_frames=8)
    sent: list[str] = []
    gate = asyncio.Event()

    async def send(frame: str) -> None:
        await gate.wait()
        sent.append(frame)

    conn.sender = sender = AsgiSender(conn, send)
    task = asyncio.create_task(sender.run())
    conn.send_frame("first")
    await asyncio.sleep(0)
    for seq in range(2, 50):
        conn.outbox.push_diff(seq, seq, {"AAPL": {"symbol": "AAPL", "seq": seq, "price": seq}})
        conn.wake()
        await asyncio.sleep(0)
    assert conn.outbox.pending_symbols == 1
    gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert sent[0] == "first"
    assert [orjson.loads(f)["seq"] for f in sent[1:]] == [49]
    conn.close(CloseCode.GOING_AWAY)
    await asyncio.wait_for(task, 1)


async def test_stuck_sender_is_cancelled_on_close() -> None:
    conn = Connection(max_frames=8)

    async def send(frame: str) -> None:
        await asyncio.Event().wait()  # a client that never reads

    conn.sender = sender = AsgiSender(conn, send)
    task = asyncio.create_task(sender.run())
    conn.send_frame("x")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    assert conn.stuck(loop.time() + 31, timeout=30)
    assert not conn.stuck(loop.time(), timeout=30)
    conn.close(CloseCode.SLOW_CLIENT)
    await asyncio.wait_for(task, 1)
    assert conn.close_code == CloseCode.SLOW_CLIENT


def test_too_many_queued_frames_closes() -> None:
    conn = Connection(max_frames=2)
    for _ in range(3):
        conn.send_frame("pong")
    assert conn.close_code == CloseCode.SLOW_CLIENT
