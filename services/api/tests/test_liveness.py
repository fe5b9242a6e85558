"""No producer alive: every quote served stale, as data; a producer back: fresh again (pure)."""

from __future__ import annotations

from typing import Any

import orjson

from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.liveness import Liveness
from tickerhub_api.stream.mirror import Mirror
from tickerhub_api.stream.prices import PriceStream
from tickerhub_api.stream.protocol import Opening, ResumePoint
from tickerhub_core.store import SnapshotStore

from .conftest import drain

SYMBOLS = ("AAPL", "MSFT", "TSLA")


def stored(symbol: str, seq: int, stale: bool = False) -> Any:
    return {"symbol": symbol, "seq": seq, "price": 1.0, "stale": stale}


def setup() -> tuple[Mirror, PriceStream, Liveness]:
    mirror = Mirror()
    # TSLA is stale in Redis already: the producer's word, not ours.
    mirror.load(
        5,
        {"AAPL": stored("AAPL", 4), "MSFT": stored("MSFT", 5), "TSLA": stored("TSLA", 3, True)},
        "e1",
    )
    prices = PriceStream(mirror, max_symbols=10)
    store: SnapshotStore = None  # type: ignore[assignment]  # observe() does no I/O
    return mirror, prices, Liveness(mirror, prices, store)


async def connect(prices: PriceStream, watch: list[str] | None = None) -> Connection:
    conn = Connection(max_frames=8)
    await prices.attach(conn)
    drain(conn)
    if watch is not None:
        await prices.handle_text(conn, orjson.dumps({"watchlist": watch}).decode())
        drain(conn)
    return conn


async def test_a_dead_producer_marks_every_quote_stale_and_tells_the_clients() -> None:
    mirror, prices, liveness = setup()
    everything = await connect(prices)
    msft_only = await connect(prices, ["MSFT"])
    liveness.observe(beating=True)
    assert drain(everything) == []  # alive: nothing to say
    liveness.observe(beating=False)
    assert liveness.producer_alive is False
    assert liveness.quotes_stale
    [diff] = drain(everything)
    assert diff["type"] == "diff"
    assert diff["seq"] == 5  # no producer made a new seq
    assert diff["data"] == {
        "AAPL": {"symbol": "AAPL", "seq": 4, "stale": True},
        "MSFT": {"symbol": "MSFT", "seq": 5, "stale": True},
    }
    assert drain(msft_only)[0]["data"] == {"MSFT": {"symbol": "MSFT", "seq": 5, "stale": True}}
    # What REST and new connections get from the mirror says so too.
    assert all(q["stale"] for q in mirror.view().values())
    assert all(q["stale"] for q in orjson.loads(mirror.full_json()).values())
    assert all(q["stale"] for q in orjson.loads(mirror.full_snapshot_frame())["data"].values())
    # Looking again changes nothing and sends nothing.
    liveness.observe(beating=False)
    assert drain(everything) == []


async def test_the_first_diff_of_a_producer_back_carries_stale_false() -> None:
    mirror, prices, liveness = setup()
    conn = await connect(prices)
    liveness.observe(beating=True)
    liveness.observe(beating=False)
    drain(conn)
    fanned = mirror.apply(6, {"AAPL": {"symbol": "AAPL", "seq": 6, "price": 2.0}})
    prices.publish_diff(6, None, fanned)
    [diff] = drain(conn)
    assert diff["seq"] == 6
    assert diff["data"] == {
        "AAPL": {"symbol": "AAPL", "seq": 6, "price": 2.0, "stale": False},
        "MSFT": {"symbol": "MSFT", "seq": 6, "stale": False},
    }
    assert not liveness.quotes_stale
    tsla = mirror.get("TSLA")
    assert tsla is not None
    assert tsla["stale"] is True  # Redis's own stale mark stays
    assert mirror.get("MSFT") == {**stored("MSFT", 6)}
    # Its heartbeat may come a round trip later: the diff alone counts as alive.
    liveness.observe(beating=False)
    assert drain(conn) == []
    assert liveness.producer_alive is True
    # A diff with no producer gone costs nothing extra: it is fanned out as it came.
    data = {"MSFT": {"symbol": "MSFT", "seq": 7, "price": 3.0}}
    assert mirror.apply(7, data) is data


async def test_a_producer_back_without_changes_unmarks_on_its_heartbeat() -> None:
    mirror, prices, liveness = setup()
    conn = await connect(prices)
    liveness.observe(beating=True)
    liveness.observe(beating=False)
    drain(conn)
    liveness.observe(beating=True)
    [diff] = drain(conn)
    assert diff["seq"] == 5
    assert diff["data"] == {
        "AAPL": {"symbol": "AAPL", "seq": 4, "stale": False},
        "MSFT": {"symbol": "MSFT", "seq": 5, "stale": False},
    }
    assert [q["stale"] for q in mirror.view().values()] == [False, False, True]


async def test_a_reload_while_no_producer_keeps_the_quotes_stale() -> None:
    mirror, _prices, liveness = setup()
    liveness.observe(beating=True)
    liveness.observe(beating=False)
    changed = mirror.load(5, {"AAPL": stored("AAPL", 4), "MSFT": stored("MSFT", 5)}, "e1")
    assert changed == {"TSLA"}  # gone from Redis; the others are still stale, unchanged
    assert all(q["stale"] for q in mirror.view().values())


async def test_a_resume_while_no_producer_learns_the_stale_marks() -> None:
    _mirror, prices, liveness = setup()
    liveness.observe(beating=True)
    liveness.observe(beating=False)
    conn = Connection(max_frames=8)
    await prices.attach(conn, Opening(resume=ResumePoint(seq=5, epoch="e1")))
    [answer] = drain(conn)
    assert answer["resumed"] is True
    assert {s: q["stale"] for s, q in answer["data"].items()} == {"AAPL": True, "MSFT": True}
