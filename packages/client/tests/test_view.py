"""QuoteView / NewsView: the merged view docs/protocol.md describes, message by message."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from tickerhub_client import (
    Diff,
    Error,
    Message,
    News,
    NewsSnapshot,
    NewsView,
    ProtocolError,
    QuoteView,
    Snapshot,
    Unsubscribed,
)
from tickerhub_testkit.producer import news_item


def quote(symbol: str, seq: int, **fields: Any) -> dict[str, Any]:
    return {"symbol": symbol, "seq": seq, "price": 1.0, "volume": 10, "stale": False, **fields}


def full(seq: int, **data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "snapshot", "seq": seq, "data": data}


def resumed(seq: int, epoch: str, **data: dict[str, Any]) -> dict[str, Any]:
    """A resumed answer: a partial snapshot with ``resumed: true``."""
    return {"type": "snapshot", "partial": True, "resumed": True, "seq": seq, "epoch": epoch,
            "data": data}  # fmt: skip


def test_full_snapshot_replaces_everything() -> None:
    view = QuoteView()
    view.apply(full(1, AAPL=quote("AAPL", 1), MSFT=quote("MSFT", 1)))
    event = view.apply(full(5, TSLA=quote("TSLA", 4)))
    assert isinstance(event, Snapshot)
    assert (event.seq, event.partial, event.resumed) == (5, False, None)
    assert view.quotes == {"TSLA": quote("TSLA", 4)}
    assert view.seq == 5


def test_partial_snapshot_merges_and_keeps_the_rest() -> None:
    view = QuoteView()
    view.apply(full(3, AAPL=quote("AAPL", 2), MSFT=quote("MSFT", 3)))
    reply = {
        **full(4, TSLA=quote("TSLA", 4)),
        "partial": True,
        "subscribed": ["TSLA"],
        "unknown": ["NEWCO"],
        "watchlist": ["AAPL", "MSFT", "NEWCO", "TSLA"],
    }
    event = view.apply(reply)
    assert isinstance(event, Snapshot)
    assert event.partial
    assert event.unknown == ["NEWCO"]
    assert set(view.quotes) == {"AAPL", "MSFT", "TSLA"}
    assert view.watchlist == ["AAPL", "MSFT", "NEWCO", "TSLA"]
    assert view.seq == 4


def test_resumed_answer_with_changed_fields_merges_them_into_the_held_quote() -> None:
    view = QuoteView()
    view.apply({**full(10, AAPL=quote("AAPL", 9), MSFT=quote("MSFT", 10)), "epoch": "e1"})
    # ?fields=changed: MSFT cut to what changed after seq 10
    view.apply(resumed(15, "e1", MSFT={"symbol": "MSFT", "seq": 14, "price": 2.0}))
    assert view.quotes == {"AAPL": quote("AAPL", 9), "MSFT": quote("MSFT", 14, price=2.0)}


def test_resumed_snapshot_merges_only_what_changed_and_tracks_epoch() -> None:
    view = QuoteView()
    view.apply({**full(10, AAPL=quote("AAPL", 9), MSFT=quote("MSFT", 10)), "epoch": "e1"})
    assert view.epoch == "e1"
    answer = resumed(15, "e1", MSFT=quote("MSFT", 14, price=2.0))
    event = view.apply(answer)
    assert isinstance(event, Snapshot)
    assert (event.resumed, event.epoch, event.seq) == (True, "e1", 15)
    assert view.quotes == {"AAPL": quote("AAPL", 9), "MSFT": quote("MSFT", 14, price=2.0)}


def test_refused_resume_is_a_full_snapshot_with_the_new_epoch() -> None:
    view = QuoteView()
    view.apply({**full(10, AAPL=quote("AAPL", 9)), "epoch": "old"})
    event = view.apply(
        {
            **full(2, MSFT=quote("MSFT", 2)),
            "epoch": "new",
            "resumed": False,
            "reason": "epoch_changed",
        }
    )
    assert isinstance(event, Snapshot)
    assert (event.resumed, event.reason) == (False, "epoch_changed")
    assert (view.seq, view.epoch) == (2, "new")  # seq follows the server, even backwards
    assert view.quotes == {"MSFT": quote("MSFT", 2)}


def test_full_snapshot_without_epoch_forgets_the_old_one() -> None:
    """A server without epochs (today's, or an older process) must not be offered one."""
    view = QuoteView()
    view.apply({**full(1, AAPL=quote("AAPL", 1)), "epoch": "e1"})
    view.apply({**full(2, AAPL=quote("AAPL", 2)), "partial": True})
    assert view.epoch == "e1"  # a partial one without epoch says nothing about it
    view.apply(full(3, AAPL=quote("AAPL", 3)))
    assert view.epoch is None


def test_diff_merges_field_by_field() -> None:
    view = QuoteView()
    view.apply(full(1, AAPL=quote("AAPL", 1), MSFT=quote("MSFT", 1)))
    diff = {
        "type": "diff",
        "seq": 2,
        "ts": 1764109200123,
        "data": {
            "AAPL": {"symbol": "AAPL", "seq": 2, "price": 231.4},
            "NEWCO": quote("NEWCO", 2),  # first time seen: every field
        },
    }
    event = view.apply(diff)
    assert isinstance(event, Diff)
    assert (event.seq, event.ts) == (2, 1764109200123)
    assert event.data == diff["data"]
    assert view.quotes["AAPL"] == quote("AAPL", 2, price=231.4)
    assert view.quotes["MSFT"] == quote("MSFT", 1)
    assert view.quotes["NEWCO"] == quote("NEWCO", 2)
    assert view.seq == 2


def test_view_does_not_alias_the_messages() -> None:
    view = QuoteView()
    snapshot = full(1, AAPL=quote("AAPL", 1))
    view.apply(snapshot)
    view.apply(
        {"type": "diff", "seq": 2, "data": {"AAPL": {"symbol": "AAPL", "seq": 2, "price": 9.0}}}
    )
    assert snapshot["data"]["AAPL"] == quote("AAPL", 1)


def test_unsubscribed_drops_symbols() -> None:
    view = QuoteView()
    view.apply(full(1, AAPL=quote("AAPL", 1), MSFT=quote("MSFT", 1)))
    event = view.apply({"type": "unsubscribed", "symbols": ["AAPL"], "watchlist": ["MSFT"]})
    assert isinstance(event, Unsubscribed)
    assert event == Unsubscribed(["AAPL"], ["MSFT"], raw=event.raw)
    assert set(view.quotes) == {"MSFT"}
    assert view.watchlist == ["MSFT"]
    assert view.seq == 1


def test_errors_pong_and_unknown_types_change_nothing() -> None:
    view = QuoteView()
    view.apply(full(1, AAPL=quote("AAPL", 1)))
    before = orjson.dumps(view.quotes)
    assert view.apply("pong") is None
    assert view.apply(b"pong") is None
    error = view.apply('{"type": "error", "code": "bad_symbol", "message": "not valid"}')
    assert isinstance(error, Error)
    assert (error.code, error.message) == ("bad_symbol", "not valid")
    other = view.apply({"type": "max_rate", "max_rate": 2})
    assert isinstance(other, Message)
    assert (other.type, other.raw["max_rate"]) == ("max_rate", 2)
    assert orjson.dumps(view.quotes) == before
    assert view.seq == 1


@pytest.mark.parametrize(
    "frame",
    [
        "hello",
        "[1, 2]",
        '{"seq": 1}',
        '{"type": "diff", "data": {}}',
        '{"type": "diff", "seq": "1", "data": {}}',
        '{"type": "snapshot", "seq": 1, "data": []}',
        '{"type": "snapshot", "seq": true, "data": {}}',
    ],
)
def test_malformed_messages_raise_protocol_error(frame: str) -> None:
    view = QuoteView()
    view.apply(full(1, AAPL=quote("AAPL", 1)))
    with pytest.raises(ProtocolError):
        view.apply(frame)
    assert view.quotes == {"AAPL": quote("AAPL", 1)}


def test_random_stream_converges_to_the_producers_state() -> None:
    """A producer's full state vs the view fed snapshots, partial snapshots and diffs."""
    rng = random.Random(7)
    symbols = [f"S{i}" for i in range(12)]
    truth: dict[str, dict[str, Any]] = {}
    view = QuoteView()
    seq = 0
    for step in range(2000):
        seq += 1
        roll = rng.random()
        if roll < 0.02:
            view.apply(full(seq, **{s: dict(q) for s, q in truth.items()}))
            continue
        if roll < 0.05 and truth:
            some = rng.sample(sorted(truth), k=min(3, len(truth)))
            view.apply({**full(seq, **{s: dict(truth[s]) for s in some}), "partial": True})
            continue
        data: dict[str, dict[str, Any]] = {}
        for symbol in rng.sample(symbols, k=rng.randint(1, 4)):
            if symbol not in truth:
                truth[symbol] = quote(symbol, seq, price=float(step))
                data[symbol] = dict(truth[symbol])
            else:
                field = rng.choice(["price", "volume", "stale", "change"])
                value = {
                    "price": step * 1.5,
                    "volume": step,
                    "stale": step % 2 == 0,
                    "change": -step,
                }[field]
                truth[symbol].update({field: value, "seq": seq})
                data[symbol] = {"symbol": symbol, "seq": seq, field: value}
        view.apply(orjson.dumps({"type": "diff", "seq": seq, "data": data}))
    assert view.quotes == truth
    assert view.seq == seq


def test_news_view_snapshot_replaces_news_prepends_unique() -> None:
    view = NewsView(max_items=3)
    event = view.apply({"type": "snapshot", "data": [news_item(2, "AAPL"), news_item(1, "MSFT")]})
    assert isinstance(event, NewsSnapshot)
    assert [i["id"] for i in view.items] == ["id2", "id1"]
    event = view.apply(
        {"type": "news", "data": [news_item(4, "AAPL"), news_item(3), news_item(2, "AAPL")]}
    )
    assert isinstance(event, News)
    assert [i["id"] for i in event.items] == ["id4", "id3"]  # id2 was known
    assert [i["id"] for i in view.items] == ["id4", "id3", "id2"]  # bounded: id1 went
    view.apply({"type": "news", "data": [news_item(1)]})  # forgotten with the item: new again
    assert [i["id"] for i in view.items] == ["id1", "id4", "id3"]
    event = view.apply(
        {"type": "snapshot", "data": [news_item(4, "AAPL")], "watchlist": ["AAPL"], "unknown": []}
    )
    assert isinstance(event, NewsSnapshot)
    assert event.watchlist == ["AAPL"]
    assert [i["id"] for i in view.items] == ["id4"]
    assert view.apply("pong") is None
    with pytest.raises(ProtocolError):
        view.apply({"type": "news", "data": {}})
