"""Symbols on demand, api side (interest.py): the bookkeeping and the refusals, without
Redis (a fake store with the InterestStore's interface; its Lua has its own tests)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tickerhub_api.interest import InterestBook, InterestRegistry, OnDemandRefused
from tickerhub_api.stream.connection import Connection
from tickerhub_api.stream.mirror import Mirror
from tickerhub_api.stream.prices import PriceStream
from tickerhub_core.interest import Outcome

from .conftest import drain, quote


class FakeStore:
    def __init__(self, answers: dict[str, Outcome] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[list[str], list[str]]] = []

    async def register(self, asks: Sequence[str], touches: Sequence[str]) -> dict[str, Outcome]:
        self.calls.append((list(asks), list(touches)))
        return {s: self.answers.get(s, Outcome.OK) for s in [*asks, *touches]}


def test_book_asks_new_symbols_once_and_rechecks_the_pending() -> None:
    book = InterestBook()
    held = {"AAPL"}
    assert book.asked(["IBM", "AAPL"], held)
    assert not book.asked(["IBM"], held)  # already queued
    asks, touches = book.round(held, lambda s: True, refresh=False)
    assert (asks, touches) == (["IBM"], ["AAPL"])
    refused = book.settle({"IBM": Outcome.OK, "AAPL": Outcome.NOT_ON_DEMAND}, held)
    assert refused == {}
    assert not book.asked(["AAPL"], held)  # TICKERS: never sent again
    # IBM is pending (not published): in every round until it is, then refreshed only.
    assert book.round(held, lambda s: True, refresh=False) == (["IBM"], [])
    held.add("IBM")
    assert book.round(held, lambda s: True, refresh=False) == ([], [])
    assert book.round(held, lambda s: True, refresh=True) == ([], ["IBM"])
    # Nobody watches it any more: no longer refreshed (it expires in Redis).
    assert book.round(held, lambda s: False, refresh=True) == ([], [])
    assert book.tracked == set()


def test_book_waits_for_an_on_demand_poller_on_refresh_rounds() -> None:
    book = InterestBook()
    book.asked(["IBM"], set())
    book.round(set(), lambda s: True, refresh=False)
    assert book.settle({"IBM": Outcome.NO_POLLER}, set()) == {}  # no error: stays unknown
    assert book.round(set(), lambda s: True, refresh=False) == ([], [])
    assert book.round(set(), lambda s: True, refresh=True) == (["IBM"], [])


def test_book_returns_refusals_and_retries_after_a_failed_round() -> None:
    book = InterestBook()
    book.asked(["ZZZZ", "ORCL"], set())
    asks, touches = book.round(set(), lambda s: True, refresh=False)
    book.retry(asks, touches)
    asks, _ = book.round(set(), lambda s: True, refresh=False)
    assert asks == ["ORCL", "ZZZZ"]
    refused = book.settle({"ZZZZ": Outcome.UNKNOWN, "ORCL": Outcome.CAPACITY}, set())
    assert refused == {"ZZZZ": Outcome.UNKNOWN, "ORCL": Outcome.CAPACITY}
    assert book.pending == set()
    assert book.tracked == set()


async def test_refused_symbols_leave_the_filter_with_one_error_per_code() -> None:
    mirror = Mirror()
    mirror.load(1, {"AAPL": quote("AAPL")})
    stream = PriceStream(mirror, max_symbols=10)
    store = FakeStore({"ZZZZ": Outcome.UNKNOWN, "ORCL": Outcome.CAPACITY})
    registry = InterestRegistry(store, mirror, stream, 600, 0.1)  # type: ignore[arg-type]
    stream.on_watch = registry.asked
    conn = Connection(max_frames=8)
    await stream.attach(conn)
    await stream.handle_text(conn, '{"watchlist": ["AAPL", "ZZZZ", "ORCL", "IBM"]}')
    drain(conn)
    await registry.round(refresh=False)
    assert store.calls == [(["IBM", "ORCL", "ZZZZ"], ["AAPL"])]
    errors = drain(conn)
    assert {e["code"]: e["symbols"] for e in errors} == {
        "capacity": ["ORCL"],
        "unknown_symbol": ["ZZZZ"],
    }
    assert errors[-1]["watchlist"] == ["AAPL", "IBM"]
    assert conn.watch == {"AAPL", "IBM"}
    assert stream.errors == {"capacity": 1, "unknown_symbol": 1}
    # One call per round, whatever the number of connections and messages.
    other = Connection(max_frames=8)
    await stream.attach(other)
    await stream.handle_text(other, '{"subscribe": ["SAP"]}')  # watches everything: no ask
    await stream.handle_text(other, '{"watchlist": ["SAP", "IBM"]}')
    await registry.round(refresh=False)
    assert store.calls[-1] == (["IBM", "SAP"], [])


async def test_rest_first_quote_answers_404_503_504() -> None:
    mirror = Mirror()
    stream = PriceStream(mirror, max_symbols=10)
    store = FakeStore(
        {"ZZZZ": Outcome.UNKNOWN, "ORCL": Outcome.CAPACITY, "NOPOLLER": Outcome.NO_POLLER}
    )
    registry = InterestRegistry(store, mirror, stream, 600, 0.2)  # type: ignore[arg-type]

    async def never(symbol: str) -> tuple[int, str, None]:
        return 0, "", None

    for symbol, status, text in [
        ("ZZZZ", 404, "unknown symbol: ZZZZ"),
        ("ORCL", 503, "capacity"),
        ("IBM", 504, "no quote for IBM yet"),
        ("NOPOLLER", 404, "unknown symbol: NOPOLLER"),
    ]:
        with pytest.raises(OnDemandRefused) as info:
            await registry.first_quote(symbol, never)
        assert info.value.status_code == status
        assert text in info.value.detail

    async def soon(symbol: str) -> tuple[int, str, dict[str, object]]:
        return 7, "e", {"symbol": symbol}

    assert await registry.first_quote("IBM", soon) == (7, "e", {"symbol": "IBM"})  # type: ignore[arg-type]
