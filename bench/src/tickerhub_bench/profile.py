"""Sampling profile of a server process with py-spy, summarised by function."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def frame_name(frame: str) -> str:
    """``send (starlette/websockets.py:123)`` -> ``send (starlette/websockets.py)``."""
    frame = _LINE.sub(")", frame.strip())
    frame = re.sub(r"\(/[^)]*?/site-packages/", "(", frame)
    return re.sub(r"\(/[^)]*?/(src|lib/python3\.\d+)/", "(", frame)


def summarize(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares per function from py-spy's raw (collapsed) output."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")[1:]]  # first is the thread
        if not frames:
            continue
        total += n
        self_time[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    share = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "self": [(name, share(n)) for name, n in self_time.most_common(top)],
        "inclusive": [(name, share(n)) for name, n in inclusive.most_common(top * 2)],
    }


def record(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    binary = py_spy()
    if binary is None:
        return {"error": "py-spy not installed"}
    cmd = [binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
           "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0 or not out.exists():
        return {"error": (proc.stderr or proc.stdout)[-500:]}
    summary = summarize(out.read_text())
    summary["file"] = str(out)
    return summary
