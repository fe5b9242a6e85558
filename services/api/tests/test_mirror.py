"""The process's snapshot copy: apply, stale, gap, reload."""

from __future__ import annotations

from typing import Any

import orjson

from tickerhub_api.stream.mirror import Mirror, Step


def test_check_classifies_seq() -> None:
    mirror = Mirror()
    mirror.load(10, {})
    assert mirror.check(11) is Step.NEXT
    assert mirror.check(10) is Step.STALE
    assert mirror.check(3) is Step.STALE
    assert mirror.check(12) is Step.GAP


def test_apply_merges_fields_and_adds_symbols() -> None:
    mirror = Mirror()
    mirror.load(1, {"AAPL": {"symbol": "AAPL", "seq": 1, "price": 1.0, "volume": 5}})
    mirror.apply(2, {"AAPL": {"symbol": "AAPL", "seq": 2, "price": 2.0}})
    mirror.apply(3, {"MSFT": {"symbol": "MSFT", "seq": 3, "price": 9.0}})
    assert mirror.seq == 3
    assert mirror.get("AAPL") == {"symbol": "AAPL", "seq": 2, "price": 2.0, "volume": 5}
    assert "MSFT" in mirror
    assert len(mirror) == 2


def test_apply_does_not_alias_the_diff() -> None:
    mirror = Mirror()
    mirror.load(0, {})
    diff = {"AAPL": {"symbol": "AAPL", "seq": 1, "price": 1.0}}
    mirror.apply(1, diff)
    mirror.apply(2, {"AAPL": {"symbol": "AAPL", "seq": 2, "price": 2.0}})
    assert diff["AAPL"]["price"] == 1.0


def test_load_reports_changed_symbols() -> None:
    mirror = Mirror()
    mirror.load(1, {"A": {"symbol": "A", "price": 1}, "B": {"symbol": "B", "price": 1}})
    changed = mirror.load(5, {"A": {"symbol": "A", "price": 1}, "C": {"symbol": "C", "price": 1}})
    assert changed == {"B", "C"}
    assert mirror.seq == 5


def test_full_snapshot_frame_is_cached_per_seq() -> None:
    mirror = Mirror()
    mirror.load(1, {"A": {"symbol": "A", "price": 1}}, "e1")
    first = mirror.full_snapshot_frame()
    assert mirror.full_snapshot_frame() is first
    expected = {
        "type": "snapshot",
        "seq": 1,
        "epoch": "e1",
        "data": {"A": {"symbol": "A", "price": 1}},
    }
    assert orjson.loads(first) == expected
    mirror.apply(2, {"A": {"symbol": "A", "price": 2}})
    assert orjson.loads(mirror.full_snapshot_frame())["data"]["A"]["price"] == 2


def test_old_seq_after_applying_means_the_sequence_restarted() -> None:
    mirror = Mirror()
    mirror.load(10, {})
    assert mirror.check(9) is Step.STALE  # queued before the load: skip
    mirror.apply(11, {"A": {"symbol": "A", "seq": 11}})
    assert mirror.check(1) is Step.GAP  # Redis flushed, a producer began again: reload
    mirror.load(1, {})
    assert mirror.check(1) is Step.STALE


def test_full_json_is_encoded_once_per_seq() -> None:
    mirror = Mirror()
    mirror.load(3, {"AAPL": {"symbol": "AAPL", "price": 1.0, "seq": 3}})
    first = mirror.full_json()
    assert mirror.full_json() is first  # the same bytes for every request at this seq
    assert orjson.loads(first) == {"AAPL": {"symbol": "AAPL", "price": 1.0, "seq": 3}}
    mirror.apply(4, {"AAPL": {"symbol": "AAPL", "price": 2.0, "seq": 4}})
    assert orjson.loads(mirror.full_json())["AAPL"]["price"] == 2.0
    mirror.load(4, {"MSFT": {"symbol": "MSFT", "price": 5.0, "seq": 4}})  # same seq, reloaded
    assert set(orjson.loads(mirror.full_json())) == {"MSFT"}


def test_a_new_epoch_changes_every_symbol_and_since_is_exact() -> None:
    mirror = Mirror()
    quotes: dict[str, Any] = {
        s: {"symbol": s, "seq": n, "price": 1} for n, s in enumerate("ABC", start=1)
    }
    mirror.load(3, quotes, "e1")
    assert mirror.load(3, quotes, "e1") == set()
    assert mirror.load(3, quotes, "e2") == {"A", "B", "C"}
    assert mirror.epoch == "e2"
    mirror.apply(4, {"A": {"symbol": "A", "seq": 4, "price": 2}})
    assert set(mirror.since(1)) == {"B", "C", "A"}
    assert set(mirror.since(2)) == {"C", "A"}
    assert mirror.since(3, ["A", "B", "ZZZ"]) == {"A": {"symbol": "A", "seq": 4, "price": 2}}
    assert mirror.since(4) == {}
