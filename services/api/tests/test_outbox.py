"""Pending-update merge (conflation) and the order of what is sent."""

from __future__ import annotations

from typing import Any

import orjson

from tickerhub_api.stream.outbox import Outbox
from tickerhub_core import wire


def diff(seq: int, **symbols: dict) -> dict:
    return {s: {"symbol": s, "seq": seq, **f} for s, f in symbols.items()}


def take(box: Outbox) -> Any:  # the decoded message, a raw frame or None
    frame = box.take()
    if frame is None or not frame.startswith("{"):
        return frame
    return orjson.loads(frame)


def test_merge_latest_value_wins_per_field() -> None:
    box = Outbox(max_frames=4)
    box.push_diff(1, 100, diff(1, AAPL={"price": 1.0, "volume": 10}, MSFT={"price": 5.0}))
    box.push_diff(2, 200, diff(2, AAPL={"price": 2.0}))
    box.push_diff(3, 300, diff(3, AAPL={"change": 0.5}, TSLA={"price": 7.0}))
    assert box.pending_symbols == 3
    assert take(box) == {
        "type": "diff",
        "seq": 3,
        "ts": 300,
        "data": {
            "AAPL": {"symbol": "AAPL", "seq": 3, "price": 2.0, "volume": 10, "change": 0.5},
            "MSFT": {"symbol": "MSFT", "seq": 1, "price": 5.0},
            "TSLA": {"symbol": "TSLA", "seq": 3, "price": 7.0},
        },
    }
    assert box.take() is None
    assert not box


def test_pending_is_bounded_by_symbols_not_by_diffs() -> None:
    box = Outbox(max_frames=4)
    for seq in range(1, 10_001):
        box.push_diff(seq, seq, diff(seq, AAPL={"price": float(seq)}, MSFT={"volume": seq}))
    assert box.pending_symbols == 2
    message = take(box)
    assert message["seq"] == 10_000
    assert message["data"]["AAPL"]["price"] == 10_000.0


def test_merging_never_mutates_the_shared_diff() -> None:
    shared = diff(1, AAPL={"price": 1.0})
    frame = wire.diff_message(1, shared, 5).decode()
    a, b = Outbox(4), Outbox(4)
    a.push_diff(1, 5, shared, frame)
    b.push_diff(1, 5, shared, frame)
    a.push_diff(2, 6, diff(2, AAPL={"price": 2.0}))
    assert shared["AAPL"]["price"] == 1.0
    assert take(a)["data"]["AAPL"]["price"] == 2.0
    assert b.take() is frame  # untouched: the very same encoded frame


def test_whole_diff_reuses_its_encoded_frame() -> None:
    data = diff(7, AAPL={"price": 1.0})
    frame = wire.diff_message(7, data, 1).decode()
    box = Outbox(4)
    box.push_diff(7, 1, data, frame)
    assert box.take() is frame


def test_frames_go_first_and_pending_never_claims_an_older_seq() -> None:
    box = Outbox(4)
    data = diff(3, AAPL={"price": 1.0})
    box.push_diff(3, 1, data, wire.diff_message(3, data, 1).decode())
    box.push_frame('{"type":"snapshot","seq":5,"data":{}}')
    box.floor(5)
    assert take(box)["type"] == "snapshot"
    message = take(box)
    assert message["type"] == "diff"
    assert message["seq"] == 5


def test_drop_forgets_symbols() -> None:
    box = Outbox(4)
    shared = diff(1, AAPL={"price": 1.0}, MSFT={"price": 2.0})
    box.push_diff(1, 1, shared, "frame")
    box.drop(["AAPL", "NOPE"])
    assert set(take(box)["data"]) == {"MSFT"}
    assert set(shared) == {"AAPL", "MSFT"}
    box.push_diff(2, 2, diff(2, AAPL={"price": 1.0}))
    box.drop(["AAPL"])
    assert not box


def test_clear_pending_keeps_frames() -> None:
    box = Outbox(4)
    box.push_frame("pong")
    box.push_diff(1, 1, diff(1, AAPL={"price": 1.0}))
    box.clear_pending()
    assert box.take() == "pong"
    assert box.take() is None


def test_frame_bound() -> None:
    box = Outbox(max_frames=2)
    assert box.push_frame("a")
    assert box.push_frame("b")
    assert not box.push_frame("c")
    assert box.queued_frames == 2


def test_bars_merge_per_symbol_and_minute_and_follow_diffs() -> None:
    box = Outbox(max_frames=4)
    box.push_bar("AAPL", "T1", '{"type":"bar","revision":1}')
    box.push_bar("MSFT", "T1", '{"type":"bar","symbol":"MSFT"}')
    box.push_bar("AAPL", "T1", '{"type":"bar","revision":2}')  # replaces the unsent one
    box.push_bar("AAPL", "T2", '{"type":"bar","revision":1,"t":"T2"}')
    box.push_diff(1, 100, diff(1, AAPL={"price": 1.0}))
    box.push_frame("reply")
    assert take(box) == "reply"
    assert take(box)["type"] == "diff"
    assert take(box) == {"type": "bar", "symbol": "MSFT"}
    assert take(box) == {"type": "bar", "revision": 2}
    box.drop(["AAPL"])  # unwatched: its pending bars go too
    assert take(box) is None
    assert not box
