"""The table printed at the end, and the verdicts against the issue's targets."""

from __future__ import annotations

import math
from typing import Any

Row = tuple[str, str, str, str]


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def gain(ours: Any, base: Any, lower_better: bool) -> str:
    """How many times better ours is (>1 = better), whichever direction is better."""
    if not isinstance(ours, int | float) or not isinstance(base, int | float):
        return "-"
    if math.isnan(ours) or math.isnan(base):
        return "-"
    num, den = (base, ours) if lower_better else (ours, base)
    if den == 0:
        return "inf" if num else "-"
    return f"{num / den:.1f}x"


def rows_for(name: str, entry: dict[str, Any]) -> list[Row]:
    ours, base = entry.get("ours") or {}, entry.get("baseline") or {}
    rows: list[Row] = []

    def add(label: str, path: tuple[str, ...], fmt: str, lower: bool | None) -> None:
        a, b = _get(ours, *path), _get(base, *path)
        rows.append((label, _fmt(a, fmt), _fmt(b, fmt), "" if lower is None else gain(a, b, lower)))

    for side, data in (("ours", ours), ("baseline", base)):
        if "error" in data:
            rows.append((f"ERROR ({side})", data["error"][:60], "", ""))
    if entry["scenario"].get("storm"):
        return storm_rows(ours)
    if entry["scenario"].get("freshness"):
        return rows + freshness_rows(ours)
    if entry["scenario"]["saturation"]:
        if name == "E":
            single = entry.get("single") or {}
            a, b = _get(ours, "max_rate"), _get(single, "max_rate")
            rows.append(("max upd/s, p99<=100ms (2 procs | 1)", _fmt(a, ".0f"), _fmt(b, ".0f"),
                         gain(a, b, False)))  # fmt: skip
            a, b = _get(ours, "best", "delivered_per_s"), _get(single, "best", "delivered_per_s")
            rows.append(("delivered/s at that rate (2 | 1)", _fmt(a, ".0f"), _fmt(b, ".0f"),
                         gain(a, b, False)))  # fmt: skip
            return rows
        add("max updates/s with p99 <= 100 ms", ("max_rate",), ".0f", False)
        add("first failing rate", ("first_failing_rate",), ".0f", None)
        add("delivered/s at max rate", ("best", "delivered_per_s"), ".0f", False)
        add("p99 ms at max rate", ("best", "latency", "p99_ms"), ".1f", None)
        add("api CPU % at max rate", ("best", "api_cpu_pct"), ".0f", None)
        add("loadgen CPU % at max rate", ("best", "loadgen_cpu_pct"), ".0f", None)
        return rows
    if name == "F":
        quiet = ours.get("without_flood") or {}
        for q in ("p50_ms", "p99_ms", "max_ms"):
            a, b = _get(quiet, "latency_normal", q), _get(ours, "latency_normal", q)
            rows.append((f"stream {q[:-3]} ms (quiet | flood)", _fmt(a, ".1f"), _fmt(b, ".1f"), ""))
        a, b = _get(quiet, "api_cpu_pct"), _get(ours, "api_cpu_pct")
        rows.append(("api CPU % (quiet | flood)", _fmt(a, ".0f"), _fmt(b, ".0f"), ""))
        rest = ours.get("rest") or {}
        rows.append(("GET /tickers per s during the flood", _fmt(rest.get("per_s"), ".0f"), "", ""))
        rows.append(("  statuses / errors", str(rest.get("statuses")), str(rest.get("errors")), ""))
        add("final-state mismatches (clients)", ("check", "mismatched_clients"), "d", None)
        return rows
    if entry["scenario"].get("client_rate"):
        add("diff frames per client per s (mean)", ("diff_frames_per_client_s",), ".2f", None)
        add("diff frames per client per s (max)", ("max_diff_frames_per_client_s",), ".2f", None)
    add("clients connected", ("connect", "connected"), "d", None)
    add("connect time s", ("connect", "seconds"), ".1f", True)
    add("updates published", ("published",), "d", None)
    add("updates delivered", ("delivered",), "d", None)
    add("  expected (published x watchers)", ("expected",), "d", None)
    add("delivered updates/s", ("delivered_per_s",), ".0f", False)
    label = "latency" if name != "C" else "latency (non-stalled)"
    add(f"{label} p50 ms", ("latency_normal", "p50_ms"), ".1f", True)
    add(f"{label} p99 ms", ("latency_normal", "p99_ms"), ".1f", True)
    add(f"{label} max ms", ("latency_normal", "max_ms"), ".1f", True)
    if name == "C":
        add("stalled clients p99 ms", ("latency_stalled", "p99_ms"), ".1f", None)
        add("stalled clients mismatched", ("check", "mismatched_stalled_clients"), "d", None)
        rows.append(("stalled clients dropped (close code)",
                     str(_get(ours, "check", "dropped") or {}),
                     str(_get(base, "check", "dropped") or {}), ""))  # fmt: skip
    add("final-state mismatches (clients)", ("check", "mismatched_clients"), "d", None)
    add("not converged after load", ("not_converged",), "d", None)
    add("api CPU %", ("api_cpu_pct",), ".0f", True)
    off = entry.get("nometrics") or {}
    if off:
        a, b = _get(ours, "api_cpu_pct"), _get(off, "api_cpu_pct")
        rows.append(("api CPU % with METRICS=false (ours | off)", _fmt(a, ".1f"), _fmt(b, ".1f"),
                     metrics_cost(a, b)))  # fmt: skip
    add("api peak RSS MiB", ("peak_rss_mib",), ".0f", True)
    add("api RSS per connection KiB", ("connect", "rss_per_conn_kib"), ".1f", True)
    add("loadgen CPU % (busiest worker)", ("loadgen_worker_max_pct",), ".0f", None)
    return rows


def storm_rows(result: dict[str, Any]) -> list[Row]:
    """Scenario R: the "ours" column is with resume, "baseline" without (full snapshots)."""
    rows: list[Row] = [("(columns: with resume | without)", "resume", "full", "")]
    resume, full = result.get("resume") or {}, result.get("full") or {}
    for label, path, fmt, lower in (
        ("symbols changed while the api was down", ("changed_share",), ".1%", None),
        ("clients reconnected", ("reconnected",), "d", None),
        ("  answered with resumed: true", ("resumed",), "d", None),
        ("all converged, s after api ready", ("converged_s",), ".2f", True),
        ("bytes received (payload)", ("bytes",), "d", True),
        ("not converged", ("not_converged",), "d", None),
        ("final-state mismatches (clients)", ("check", "mismatched_clients"), "d", None),
        ("reconnect errors", ("errors",), "d", None),
    ):
        a, b = _get(resume, *path), _get(full, *path)
        rows.append((label, _fmt(a, fmt), _fmt(b, fmt), "" if lower is None else gain(a, b, lower)))
    rows.append(("resume bytes / full bytes", _fmt(result.get("bytes_ratio"), ".3f"), "", ""))
    return rows


def freshness_rows(result: dict[str, Any]) -> list[Row]:
    """Scenario S: the "ours" column is the push stream, "baseline" poll-only (POLL_FREQ 5 s)."""
    rows: list[Row] = [("(columns: stream | poll-only)", "stream", "poll-only", "")]
    stream, poll = result.get("stream") or {}, result.get("poll") or {}
    for label, path, fmt, lower in (
        ("clients connected", ("connect", "connected"), "d", None),
        ("ticks sent by the fake streamer", ("ticks_sent",), "d", None),
        ("updates received (all clients)", ("updates_received",), "d", None),
        ("update latency p50, ms (value made -> client)", ("latency", "p50_ms"), ".1f", True),
        ("update latency p99, ms", ("latency", "p99_ms"), ".1f", True),
        # Poll-only: the staleness (its Yahoo changes continuously). Stream: bounded by
        # how often each symbol ticks (every 0.5 s at 1,000 ticks/s over 500 symbols).
        ("age of held values, mean ms", ("staleness", "mean_ms"), ".0f", None),
        ("age of held values p99, ms", ("staleness", "p99_ms"), ".0f", None),
    ):
        a, b = _get(stream, *path), _get(poll, *path)
        rows.append((label, _fmt(a, fmt), _fmt(b, fmt), "" if lower is None else gain(a, b, lower)))
    return rows


def metrics_cost(on: Any, off: Any) -> str:
    """CPU with metrics relative to without, as ``+x.x%``."""
    if not isinstance(on, int | float) or not isinstance(off, int | float) or not off:
        return "-"
    return f"{100 * (on - off) / off:+.1f}%"


def verdicts(results: dict[str, Any]) -> list[str]:
    sc = results["scenarios"]
    out: list[str] = []

    def p99(name: str, side: str = "ours") -> float | None:
        return _get(sc, name, side, "latency_normal", "p99_ms")

    def line(label: str, ok: bool | None, detail: str) -> None:
        state = "n/a" if ok is None else ("MET" if ok else "MISSED")
        out.append(f"{label:<48} {state:<7} {detail}")

    if "A" in sc:
        v, mm = p99("A"), _get(sc, "A", "ours", "check", "mismatched_clients")
        line("A: p99 <= 50 ms, 0 mismatches", None if v is None else (v <= 50 and mm == 0),
             f"p99 {_fmt(v, '.1f')} ms, mismatches {mm}")  # fmt: skip
    if "A" in sc and "nometrics" in sc["A"]:
        on = _get(sc, "A", "ours", "api_cpu_pct")
        off = _get(sc, "A", "nometrics", "api_cpu_pct")
        ok = None if on is None or not off else on <= 1.05 * off
        line("A: CPU with metrics <= 1.05x without (issue 11)", ok,
             f"{_fmt(on, '.1f')}% vs {_fmt(off, '.1f')}% ({metrics_cost(on, off)})")  # fmt: skip
    if "B" in sc:
        v, mm = p99("B"), _get(sc, "B", "ours", "check", "mismatched_clients")
        kib = _get(sc, "B", "ours", "connect", "rss_per_conn_kib")
        ok = None if v is None else (v <= 100 and mm == 0 and (kib or 0) <= 20)
        line("B: p99 <= 100 ms, 0 mismatches, <= 20 KiB/conn", ok,
             f"p99 {_fmt(v, '.1f')} ms, mismatches {mm}, {_fmt(kib, '.1f')} KiB/conn")  # fmt: skip
    if "C" in sc and "A" in sc:
        v, a = p99("C"), p99("A")
        stalled = _get(sc, "C", "ours", "check", "mismatched_stalled_clients")
        ok = None if v is None or a is None else (v <= 1.2 * a and stalled == 0)
        line(
            "C: p99 <= 1.2x A's, stalled clients converge",
            ok,
            f"p99 {_fmt(v, '.1f')} ms vs A {_fmt(a, '.1f')} ms, stalled mismatched {stalled}, "
            f"dropped {_get(sc, 'C', 'ours', 'check', 'dropped')}",
        )
    if "D" in sc:
        a, b = _get(sc, "D", "ours", "max_rate"), _get(sc, "D", "baseline", "max_rate")
        ok = None if not a or b is None else (a >= 10 * b if b else True)
        line("D: saturation >= 10x baseline", ok, f"{_fmt(a, '.0f')} vs {_fmt(b, '.0f')} upd/s")
    if "F" in sc:
        quiet = _get(sc, "F", "ours", "without_flood", "latency_normal", "p99_ms")
        flood = _get(sc, "F", "ours", "latency_normal", "p99_ms")
        line("F: stream p99 beside a REST flood (figure)", None,
             f"{_fmt(quiet, '.1f')} ms quiet, {_fmt(flood, '.1f')} ms with the flood")  # fmt: skip
    if "E" in sc:
        a, b = _get(sc, "E", "ours", "max_rate"), _get(sc, "E", "single", "max_rate")
        ok = None if not a or not b else a >= 1.6 * b
        line("E: 2 processes >= 1.6x one", ok, f"{_fmt(a, '.0f')} vs {_fmt(b, '.0f')} upd/s")
    if "R" in sc:
        ratio = _get(sc, "R", "ours", "bytes_ratio")
        secs = _get(sc, "R", "ours", "resume", "converged_s")
        ok = None if ratio is None or secs is None else (ratio <= 0.10 and secs <= 10)
        line("R: resume <= 10% of the bytes, converged <= 10 s", ok,
             f"{_fmt(ratio, '.3f')} of the bytes, {_fmt(secs, '.2f')} s")  # fmt: skip
    if "M" in sc:
        fmax = _get(sc, "M", "ours", "max_diff_frames_per_client_s")
        cpu, cpu_a = _get(sc, "M", "ours", "api_cpu_pct"), _get(sc, "A", "ours", "api_cpu_pct")
        mm = _get(sc, "M", "ours", "check", "mismatched_clients")
        ok = None if fmax is None else (fmax <= 1.0 and mm == 0)
        line("M: <= 1 frame/client/s, final state = REST", ok,
             f"max {_fmt(fmax, '.2f')} frames/client/s, mismatches {mm}, "
             f"api CPU {_fmt(cpu, '.0f')}% vs A {_fmt(cpu_a, '.0f')}%")  # fmt: skip
    if "S" in sc:
        v = _get(sc, "S", "ours", "stream", "latency", "p99_ms")
        stale = _get(sc, "S", "ours", "poll", "staleness", "mean_ms")
        line(
            "S: stream tick -> client p99 <= 100 ms (issue 8)",
            None if v is None else v <= 100,
            f"p99 {_fmt(v, '.1f')} ms; poll-only staleness mean {_fmt(stale, '.0f')} ms",
        )
    return out


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"TickerHub fan-out benchmark ({'full' if results['options']['full'] else 'quick'} size)"
        f" - {m['nproc']} CPU {m['cpu_model']}, Python {m['python']}, redis {m['redis']}",
        "gain = how many times better ours is than the baseline (lower latency/CPU/RSS, "
        "higher throughput)",
        "",
    ]
    header = ("metric", "ours", "baseline", "gain")
    for name, entry in results["scenarios"].items():
        s = entry["scenario"]
        desc = (
            f"{s['clients']} clients x {s['symbols']} symbols"
            + (f" (watch {s['watch']})" if s["watch"] else "")
            + ("" if s["saturation"] else f" x {s['rate']:.0f} upd/s, {s['duration']:.0f}s")
        )
        lines.append(f"{name}  {s['title']}: {desc}")
        rows = [header, *rows_for(name, entry)]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            lines.append(
                "  " + r[0].ljust(widths[0]) + "  " + "  ".join(
                    r[i].rjust(widths[i]) for i in range(1, 4)
                )
            )  # fmt: skip
        lines.append("")
    lines.append("targets (issue 4):")
    lines += ["  " + v for v in verdicts(results)]
    for key, prof in (results.get("profiles") or {}).items():
        if not prof or "error" in prof:
            lines.append(f"profile {key}: {prof.get('error') if prof else 'none'}")
            continue
        lines.append(f"\nprofile {key} (py-spy, {prof['samples']} samples) - top self time:")
        lines += [f"  {share:5.1f}%  {fn}" for fn, share in prof["self"][:12]]
    return "\n".join(lines)
