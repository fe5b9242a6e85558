"""docs/protocol.md's Python example, run as written (only its URL pointed at a real api)."""

from __future__ import annotations

import ast
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tickerhub_testkit.processes import Procs, poller_process, start_api
from tickerhub_testkit.wait import WAIT

pytestmark = pytest.mark.integration

PROTOCOL = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
DOC_URL = "ws://localhost:8000"


def example() -> str:
    text = PROTOCOL.read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)
    [block] = [b for b in blocks if "PricesClient" in b]
    assert block.count(DOC_URL) == 1, "the example no longer connects to localhost:8000"
    return block


def watched(line: str) -> bool:
    match = re.fullmatch(r"\d+ (\{.*\})", line)
    if match is None:
        return False
    prices = ast.literal_eval(match[1])
    return set(prices) == {"AAPL", "MSFT"} and all(isinstance(p, float) for p in prices.values())


def test_protocol_python_example_follows_the_stream(redis_server: Any, procs: Procs) -> None:
    procs(poller_process(redis_server.url, ["AAPL", "MSFT", "TSLA"]))
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING")
    code = example().replace(DOC_URL, api.ws)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + WAIT
        # e.g. "1234 {'AAPL': 231.4, 'MSFT': 402.1}": both watched symbols, nothing else.
        while sum(watched(line) for line in lines) < 5:
            assert proc.poll() is None, "\n".join(lines)
            assert time.monotonic() < deadline, "\n".join(lines[-20:])
            assert proc.stdout is not None
            if select.select([proc.stdout], [], [], 0.2)[0]:
                lines.append(proc.stdout.readline().decode().rstrip())
        assert all(watched(line) for line in lines), lines  # no error, no other symbol
    finally:
        proc.kill()
        proc.wait()
