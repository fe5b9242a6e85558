"""The symbol -> connections index."""

from __future__ import annotations

from tickerhub_api.stream.watchers import WatchIndex


def test_split_gives_each_connection_only_its_symbols() -> None:
    index: WatchIndex[str] = WatchIndex()
    index.watch("a", ["AAPL", "MSFT"])
    index.watch("b", ["MSFT"])
    index.watch_everything("all")
    split = index.split({"AAPL": {}, "MSFT": {}, "TSLA": {}})
    assert split == {"a": ["AAPL", "MSFT"], "b": "MSFT"}  # one symbol: the symbol itself
    assert index.everything == {"all"}


def test_unwatch_and_remove_leave_no_empty_entries() -> None:
    index: WatchIndex[str] = WatchIndex()
    index.watch("a", ["AAPL", "MSFT"])
    index.watch("b", ["MSFT"])
    index.unwatch("a", ["MSFT", "NOPE"])
    assert index.watchers("MSFT") == {"b"}
    index.remove("b", ["MSFT"])
    assert len(index) == 1
    index.remove("a", ["AAPL"])
    assert len(index) == 0
    assert index.split({"AAPL": {}, "MSFT": {}}) == {}


def test_remove_everything_watcher() -> None:
    index: WatchIndex[str] = WatchIndex()
    index.watch_everything("all")
    index.remove("all", None)
    assert index.everything == set()


def test_cost_is_per_watcher_not_per_connection() -> None:
    index: WatchIndex[int] = WatchIndex()
    for conn in range(10_000):
        index.watch(conn, [f"S{conn}"])
    assert index.split({"S7": {}}) == {7: "S7"}


def test_rewatch_moves_a_connection_between_watchlists_and_everything() -> None:
    index: WatchIndex[str] = WatchIndex()
    index.watch_everything("c")
    index.rewatch("c", None, {"AAPL"})
    assert index.everything == set()
    assert index.watchers("AAPL") == {"c"}
    index.rewatch("c", {"AAPL"}, None)
    assert index.watchers("AAPL") == set()
    assert index.everything == {"c"}
