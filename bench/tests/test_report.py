from tickerhub_bench.harness import expected_deliveries, watchers_of
from tickerhub_bench.profile import frame_name, summarize
from tickerhub_bench.report import gain


def test_gain_is_better_direction_ratio():
    assert gain(10.0, 100.0, lower_better=True) == "10.0x"
    assert gain(2000, 100, lower_better=False) == "20.0x"
    assert gain(None, 1.0, lower_better=True) == "-"
    assert gain(0, 5, lower_better=True) == "inf"


def test_expected_deliveries_counts_each_update_once_per_watcher():
    watchers = watchers_of([None, ["A"], ["A", "B"]], ["A", "B", "C"])
    assert watchers == {"A": 3, "B": 2, "C": 1}
    assert expected_deliveries({"A": 2, "B": 1, "C": 0}, watchers) == 8


def test_profile_summary_self_and_inclusive_shares():
    raw = (
        "thread (0x1);run (asyncio/base_events.py:10);send (starlette/websockets.py:5) 3\n"
        "thread (0x1);run (asyncio/base_events.py:11);loads (app/x.py:2) 1\n"
    )
    summary = summarize(raw)
    assert summary["samples"] == 4
    assert summary["self"][0] == ("send (starlette/websockets.py)", 75.0)
    assert ("run (asyncio/base_events.py)", 100.0) in summary["inclusive"]


def test_frame_name_drops_line_numbers_and_site_packages():
    frame = "send (/x/.venv/lib/python3.11/site-packages/starlette/websockets.py:77)"
    assert frame_name(frame) == "send (starlette/websockets.py)"


def test_storm_and_max_rate_rows_and_verdicts():
    from dataclasses import asdict

    from tickerhub_bench.report import table
    from tickerhub_bench.scenarios import scenarios

    r, m = scenarios(False, "RM")
    assert (r.storm, r.watch, m.client_rate) == (True, 10, 1.0)
    assert [s.name for s in scenarios(False, None)] == list("ABCDE")
    mode = {"reconnected": 60, "converged_s": 1.0, "check": {"mismatched_clients": 0}}
    results = {
        "machine": {"nproc": 2, "cpu_model": "x", "python": "3", "redis": "7"},
        "options": {"full": False},
        "scenarios": {
            "R": {
                "scenario": asdict(r),
                "ours": {"resume": {**mode, "bytes": 50}, "full": {**mode, "bytes": 1000},
                         "bytes_ratio": 0.05},
            },
            "M": {
                "scenario": asdict(m),
                "ours": {"max_diff_frames_per_client_s": 0.98, "check": {"mismatched_clients": 0}},
            },
        },
    }  # fmt: skip
    text = table(results)
    assert "resume bytes / full bytes" in text
    assert "20.0x" in text  # 1000 bytes full / 50 with resume
    assert "R: resume <= 10% of the bytes, converged <= 10 s MET" in text
    assert "M: <= 1 frame/client/s, final state = REST       MET" in text
