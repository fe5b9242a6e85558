from tickerhub_bench.view import ClientView, converged, mismatches, normalize_tickers


def quote(sym, seq, price, volume=10):
    return {"symbol": sym, "seq": seq, "price": price, "volume": volume, "name": sym.lower()}


def snapshot(data):
    return {
        "type": "snapshot",
        "seq": max((q["seq"] for q in data.values()), default=0),
        "data": data,
    }


def diff(data):
    return {"type": "diff", "seq": max(f["seq"] for f in data.values()), "data": data}


def test_diffs_merge_field_by_field_into_the_snapshot():
    view = ClientView()
    view.apply_snapshot(snapshot({"AAPL": quote("AAPL", 3, 1.0), "MSFT": quote("MSFT", 2, 2.0)}))
    assert view.apply_diff(diff({"AAPL": {"symbol": "AAPL", "seq": 4, "price": 1.5}})) == [4]
    both = {
        "AAPL": {"symbol": "AAPL", "seq": 5, "volume": 11},
        "MSFT": {"symbol": "MSFT", "seq": 5, "price": 2.5},
    }
    assert view.apply_diff(diff(both)) == [5, 5]
    expected = {"symbol": "AAPL", "seq": 5, "price": 1.5, "volume": 11, "name": "aapl"}
    assert view.quotes["AAPL"] == expected
    assert view.quotes["MSFT"]["price"] == 2.5


def test_updates_not_newer_than_the_view_are_ignored():
    view = ClientView()
    view.apply_snapshot(snapshot({"AAPL": quote("AAPL", 7, 1.0)}))
    assert view.apply_diff(diff({"AAPL": {"symbol": "AAPL", "seq": 6, "price": 9.9}})) == []
    assert view.apply_diff(diff({"AAPL": {"symbol": "AAPL", "seq": 7, "price": 9.9}})) == []
    assert view.quotes["AAPL"]["price"] == 1.0
    assert view.skipped == 2


def test_watchlist_filters_the_snapshot_and_counts_foreign_updates():
    view = ClientView(["AAPL"])
    view.apply_snapshot(snapshot({"AAPL": quote("AAPL", 1, 1.0), "MSFT": quote("MSFT", 1, 2.0)}))
    assert set(view.quotes) == {"AAPL"}
    assert view.merged.seq == 1
    assert view.apply_diff(diff({"MSFT": {"symbol": "MSFT", "seq": 2, "price": 3.0}})) == []
    assert view.extra == 1
    assert "MSFT" not in view.quotes


def test_a_new_symbol_in_a_diff_carries_every_field():
    view = ClientView()
    view.apply_snapshot(snapshot({}))
    assert view.apply_diff(diff({"TSLA": quote("TSLA", 3, 4.0)})) == [3]
    assert view.quotes["TSLA"] == quote("TSLA", 3, 4.0)


def test_mismatches_compare_whole_quotes_of_the_watchlist():
    server = {"AAPL": quote("AAPL", 5, 1.5), "MSFT": quote("MSFT", 5, 2.5)}
    assert mismatches({"AAPL": quote("AAPL", 5, 1.5)}, server, ["AAPL"]) == []
    assert mismatches({"AAPL": quote("AAPL", 5, 1.4)}, server, ["AAPL"]) == ["AAPL"]
    assert mismatches({"AAPL": quote("AAPL", 5, 1.5)}, server, None) == ["MSFT"]
    extra = {**server, "ZZZ": quote("ZZZ", 1, 1.0)}
    assert mismatches(extra, server, None) == ["ZZZ"]
    assert mismatches(dict(server), server, None) == []


def test_converged_waits_for_the_last_seq_of_each_watched_symbol():
    view = ClientView(["AAPL"])
    view.apply_snapshot(snapshot({"AAPL": quote("AAPL", 4, 1.0)}))
    assert not converged(view, {"AAPL": 5, "MSFT": 9})
    view.apply_diff(diff({"AAPL": {"symbol": "AAPL", "seq": 5, "price": 2.0}}))
    assert converged(view, {"AAPL": 5, "MSFT": 9})


def test_normalize_tickers_accepts_the_usual_shapes():
    q = quote("AAPL", 1, 1.0)
    assert normalize_tickers({"AAPL": q}) == {"AAPL": q}
    assert normalize_tickers([q]) == {"AAPL": q}
    assert normalize_tickers({"data": [q]}) == {"AAPL": q}
    assert normalize_tickers({"seq": 1, "quotes": {"AAPL": q}}) == {"AAPL": q}


def test_a_diff_with_foreign_and_stale_updates_merges_only_the_rest():
    view = ClientView(["AAPL", "MSFT"])
    view.apply_snapshot(snapshot({"AAPL": quote("AAPL", 4, 1.0), "MSFT": quote("MSFT", 6, 2.0)}))
    mixed = {
        "AAPL": {"symbol": "AAPL", "seq": 7, "price": 1.7},
        "MSFT": {"symbol": "MSFT", "seq": 5, "price": 9.9},  # older than the view holds
        "TSLA": {"symbol": "TSLA", "seq": 7, "price": 3.0},  # not watched
    }
    assert view.apply_diff(diff(mixed)) == [7]
    assert (view.extra, view.skipped) == (1, 1)
    assert view.quotes["AAPL"]["price"] == 1.7
    assert view.quotes["MSFT"]["price"] == 2.0
    assert "TSLA" not in view.quotes
    assert view.merged.seq == 7
