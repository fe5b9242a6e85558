"""Resume (seq + epoch) and max_rate in the price stream's logic, without sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.flusher import Flusher
from tickerhub_api.stream.mirror import Mirror
from tickerhub_api.stream.prices import PriceStream
from tickerhub_api.stream.protocol import BAD_VALUE, CloseCode, ResumePoint, parse_opening
from tickerhub_api.stream.senders import AsgiSender
from tickerhub_core.store import FieldSeqs

from .conftest import drain, quote


@pytest.fixture
def stream() -> PriceStream:
    mirror = Mirror()
    # AAPL last changed by diff 3, MSFT by 5, TSLA by 7: the snapshot is at 7.
    mirror.load(
        7, {"AAPL": quote("AAPL", 3), "MSFT": quote("MSFT", 5), "TSLA": quote("TSLA", 7)}, "E1"
    )
    return PriceStream(mirror, max_symbols=3)


async def opened(stream: PriceStream, query: dict[str, str]) -> Connection:
    conn = Connection(max_frames=8)
    await stream.attach(conn, stream.opening(query))
    return conn


async def test_resume_from_the_url_sends_only_what_changed_after_it(stream: PriceStream) -> None:
    [answer] = drain(await opened(stream, {"since": "4", "epoch": "E1"}))
    assert answer == {
        "type": "snapshot",
        "partial": True,
        "resumed": True,
        "seq": 7,
        "epoch": "E1",
        "data": {"MSFT": quote("MSFT", 5), "TSLA": quote("TSLA", 7)},
    }


async def test_resume_with_symbols_filters_and_states_the_watchlist(stream: PriceStream) -> None:
    conn = await opened(stream, {"since": "4", "epoch": "E1", "symbols": "aapl,MSFT,NEW"})
    [answer] = drain(conn)
    assert answer["resumed"] is True
    assert answer["data"] == {"MSFT": quote("MSFT", 5)}
    assert "watchlist" not in answer  # the URL form: no echo of what the client just sent
    assert answer["unknown"] == ["NEW"]
    assert conn.watch == {"AAPL", "MSFT", "NEW"}  # the filter is set all the same
    # Up to date: an empty answer, still partial.
    [again] = drain(await opened(stream, {"since": "7", "epoch": "E1"}))
    assert (again["partial"], again["data"]) == (True, {})


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"since": "4", "epoch": "OTHER"}, "epoch_changed"),
        ({"since": "8", "epoch": "E1"}, "seq_ahead"),
    ],
)
async def test_refused_resume_is_a_full_snapshot_with_the_reason(
    stream: PriceStream, query: dict[str, str], reason: str
) -> None:
    [answer] = drain(await opened(stream, {**query, "symbols": "AAPL"}))
    assert answer["resumed"] is False
    assert answer["reason"] == reason
    assert "partial" not in answer
    assert answer["data"] == {"AAPL": quote("AAPL", 3)}
    assert answer["epoch"] == "E1"
    assert answer["watchlist"] == ["AAPL"]


@pytest.mark.parametrize(
    "query",
    [
        {"since": "-1", "epoch": "E1"},
        {"since": "x", "epoch": "E1"},
        {"since": "4"},
        {"epoch": "E1"},
        {"since": "4", "epoch": "bad epoch!"},
        {"since": "4", "epoch": "E1", "fields": "some"},
        {"max_rate": "0"},
        {"max_rate": "1000"},
        {"max_rate": "fast"},
        {"max_rate": "nan"},
    ],
)
async def test_bad_url_values_get_bad_value_and_a_normal_snapshot(
    stream: PriceStream, query: dict[str, str]
) -> None:
    conn = await opened(stream, query)
    error, snapshot = drain(conn)
    assert (error["type"], error["code"]) == ("error", BAD_VALUE)
    assert snapshot["type"] == "snapshot"
    assert "partial" not in snapshot
    assert set(snapshot["data"]) == {"AAPL", "MSFT", "TSLA"}
    assert conn.min_interval is None
    assert conn.close_code is None


async def test_resume_message_with_a_watchlist(stream: PriceStream) -> None:
    conn = await opened(stream, {})
    drain(conn)
    await stream.handle_text(
        conn, '{"resume": {"seq": 5, "epoch": "E1"}, "watchlist": ["TSLA", "AAPL"]}'
    )
    [answer] = drain(conn)
    assert answer["resumed"] is True
    assert answer["data"] == {"TSLA": quote("TSLA", 7)}
    assert answer["watchlist"] == ["AAPL", "TSLA"]
    stream.publish_diff(8, 1, {"MSFT": {"symbol": "MSFT", "seq": 8, "price": 3}})
    assert drain(conn) == []  # MSFT is no longer watched


@pytest.mark.parametrize(
    "text",
    [
        '{"resume": {"seq": "a", "epoch": "E1"}}',
        '{"resume": {"seq": 1}}',
        '{"resume": {"seq": 5, "epoch": "E1", "fields": true}}',
        '{"resume": {"seq": 5, "epoch": "E1", "fields": "changed", "x": 1}}',
        '{"resume": {"id": "news-id"}}',
        '{"resume": 5}',
        '{"max_rate": 0.01}',
        '{"max_rate": true}',
        '{"max_rate": "1"}',
    ],
)
async def test_bad_messages_change_nothing(stream: PriceStream, text: str) -> None:
    conn = await opened(stream, {"symbols": "AAPL"})
    drain(conn)
    await stream.handle_text(conn, text)
    [error] = drain(conn)
    assert (error["type"], error["code"]) == ("error", BAD_VALUE)
    assert conn.watch == {"AAPL"}
    assert conn.min_interval is None


async def test_resume_before_the_first_load_is_answered_by_it() -> None:
    mirror = Mirror()
    stream = PriceStream(mirror, 3)
    conn = await opened(stream, {"since": "4", "epoch": "E1", "symbols": "MSFT"})
    assert drain(conn) == []
    mirror.load(7, {"AAPL": quote("AAPL", 3), "MSFT": quote("MSFT", 5)}, "E1")
    stream.resync(None)
    [answer] = drain(conn)
    assert (answer["resumed"], answer["data"]) == (True, {"MSFT": quote("MSFT", 5)})
    assert "watchlist" not in answer
    assert "unknown" not in answer  # none unknown: not in the answer


def rich(symbol: str, seq: int) -> Any:
    return {"symbol": symbol, "seq": seq, "price": seq + 0.5, "volume": seq * 10, "name": symbol}


def field_record_stream(fields: FieldSeqs | None) -> PriceStream:
    """AAPL last changed by 3, MSFT by 5 (its price at 5, the rest at 2), TSLA by 7."""
    mirror = Mirror()
    quotes = {"AAPL": rich("AAPL", 3), "MSFT": rich("MSFT", 5), "TSLA": rich("TSLA", 7)}
    mirror.load(7, quotes, "E1", fields)
    return PriceStream(mirror, max_symbols=3)


RECORD = FieldSeqs(
    floor=2,
    symbols={
        "AAPL": {"symbol": 3, "seq": 3, "price": 3},
        "MSFT": {"symbol": 5, "seq": 5, "price": 5, "volume": 2},
        "TSLA": {"symbol": 7, "seq": 7, "price": 7, "volume": 6},
    },
)


async def test_fields_changed_cuts_each_quote_to_what_changed_after_the_point() -> None:
    stream = field_record_stream(RECORD)
    query = {"since": "4", "epoch": "E1", "fields": "changed"}
    [answer] = drain(await opened(stream, query))
    assert answer["data"] == {
        "MSFT": {"symbol": "MSFT", "seq": 5, "price": 5.5},
        "TSLA": {"symbol": "TSLA", "seq": 7, "price": 7.5, "volume": 70},
    }
    # A diff applied after the load is recorded too: from 7 on, only its fields.
    stream._mirror.apply(8, {"AAPL": {"symbol": "AAPL", "seq": 8, "volume": 42}})
    [answer] = drain(await opened(stream, {**query, "since": "7"}))
    assert answer["data"] == {"AAPL": {"symbol": "AAPL", "seq": 8, "volume": 42}}


@pytest.mark.parametrize(
    ("fields", "since"),
    [
        (None, "4"),  # Redis had no usable record
        (RECORD, "1"),  # the record is complete only after seq 2
        (FieldSeqs(floor=2, symbols={"AAPL": {"price": 3}}), "4"),  # no entry for MSFT, TSLA
    ],
)
async def test_fields_changed_sends_whole_quotes_when_the_record_cannot_say(
    fields: FieldSeqs | None, since: str
) -> None:
    stream = field_record_stream(fields)
    query = {"since": since, "epoch": "E1", "fields": "changed", "symbols": "MSFT,TSLA"}
    [answer] = drain(await opened(stream, query))
    assert answer["resumed"] is True
    assert answer["data"] == {"MSFT": rich("MSFT", 5), "TSLA": rich("TSLA", 7)}


async def test_fields_changed_always_carries_the_stale_flag() -> None:
    """A client may hold ``stale: true`` forced by an api before a restart (no producer
    then); no recorded diff changed it, so the record alone would never clear it."""
    mirror = Mirror()
    quotes = {"MSFT": {**rich("MSFT", 5), "stale": False}, "TSLA": rich("TSLA", 7)}
    mirror.load(7, quotes, "E1", RECORD)
    stream = PriceStream(mirror, max_symbols=3)
    [answer] = drain(await opened(stream, {"since": "4", "epoch": "E1", "fields": "changed"}))
    assert answer["data"]["MSFT"] == {"symbol": "MSFT", "seq": 5, "stale": False, "price": 5.5}
    assert "stale" not in answer["data"]["TSLA"]  # a quote without the field gets none


async def test_fields_changed_sends_whole_quotes_while_quotes_are_forced_stale() -> None:
    stream = field_record_stream(RECORD)
    stream._mirror.mark_stale()
    query = {"since": "6", "epoch": "E1", "fields": "changed"}
    [answer] = drain(await opened(stream, query))
    assert set(answer["data"]) == {"AAPL", "MSFT", "TSLA"}
    assert all(q["stale"] is True and "name" in q for q in answer["data"].values())


def test_parse_opening_accepts_good_values() -> None:
    opening = parse_opening({"since": "12", "epoch": "ab12", "max_rate": "2.5"}, 10)
    assert isinstance(opening.resume, ResumePoint)
    assert (opening.resume.seq, opening.resume.epoch, opening.max_rate) == (12, "ab12", 2.5)
    assert opening.errors == ()
    assert parse_opening({"max_rate": "null"}, 10).max_rate is None


async def test_max_rate_is_answered_and_paces_the_asgi_sender(stream: PriceStream) -> None:
    sent: list[dict] = []

    async def send(frame: str) -> None:
        sent.append(orjson.loads(frame))

    conn = Connection(max_frames=8)
    sender = AsgiSender(conn, send)
    conn.sender = sender
    await stream.attach(conn, stream.opening({"symbols": "AAPL"}))
    await stream.handle_text(conn, '{"max_rate": 5}')
    task = asyncio.create_task(sender.run())
    try:
        await asyncio.sleep(0.05)
        assert [m["type"] for m in sent] == ["snapshot", "max_rate"]
        assert sent[1]["max_rate"] == 5
        for n in range(8, 40):  # 32 diffs as fast as they come, over ~0.6 s
            stream._mirror.apply(n, {"AAPL": {"symbol": "AAPL", "seq": n, "price": n}})
            stream.publish_diff(n, 1, {"AAPL": {"symbol": "AAPL", "seq": n, "price": n}})
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    finally:
        conn.close(CloseCode.GOING_AWAY)
        await task
    diffs = [m for m in sent if m["type"] == "diff"]
    # ~0.9 s at 5/s: at most 6 diffs (one at once, then one per 0.2 s), and the last
    # one carries the latest value.
    assert 2 <= len(diffs) <= 6
    assert diffs[-1]["data"]["AAPL"]["price"] == 39
    assert diffs[-1]["seq"] == 39


class _Target:
    def __init__(self) -> None:
        self.flushed = 0

    def flush(self, framed: dict[str, bytes]) -> None:
        self.flushed += 1

    def fail(self, code: object) -> None:
        pass


async def test_flusher_timers_fire_once_per_target_in_order() -> None:
    flusher = Flusher()
    loop = asyncio.get_running_loop()
    a, b = _Target(), _Target()
    now = loop.time()
    flusher.later(a, now + 0.10)
    flusher.later(a, now + 0.01)  # already due later: ignored (one entry per target)
    flusher.later(b, now + 0.05)
    assert flusher.paced == 2
    await asyncio.sleep(0.07)
    assert (a.flushed, b.flushed) == (0, 1)
    await asyncio.sleep(0.06)
    assert (a.flushed, b.flushed) == (1, 1)
    assert flusher.paced == 0
