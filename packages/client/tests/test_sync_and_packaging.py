"""The sync wrapper against the real api, and what the package pulls in."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Any

import pytest

from tickerhub_client import Closed, Diff, PricesClient
from tickerhub_client.cli import cells
from tickerhub_client.sync import iterate
from tickerhub_testkit.processes import Procs, poller_process, start_api


@pytest.mark.integration
def test_sync_iterate_follows_the_stream_and_closes(redis_server: Any, procs: Procs) -> None:
    procs(poller_process(redis_server.url, ["AAPL", "MSFT"]))
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING")
    client = PricesClient(api.ws, symbols=["MSFT"])
    diffs = 0
    with contextlib.closing(iterate(client)) as events:
        for event in events:
            diffs += isinstance(event, Diff)
            if diffs == 3:
                break
        assert set(client.quotes) == {"MSFT"}
    assert client._ws is None  # closed with the generator
    # A closed client's next iteration ends at once.
    assert [type(e) for e in iterate(client)] == [Closed]


def test_library_imports_neither_rich_nor_the_server_side() -> None:
    """The wheel depends on websockets and orjson only: importing it must not need more."""
    code = (
        "import sys, tickerhub_client, tickerhub_client.sync;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'rich', 'redis', 'pydantic', 'httpx', 'tickerhub_core', 'fastapi'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cells_format_up_down_unchanged_and_missing() -> None:
    up = {
        "price": 231.4,
        "change": 1.2,
        "change_percent": 0.52,
        "market_time": "2026-11-25T21:04:05Z",
    }
    assert cells(up) == ("231.40", "[green]+1.20[/]", "[green]▲ +0.52%[/]", "21:04:05")
    down = {"price": 0.1234, "change": -0.01, "change_percent": -7.5, "stale": True}
    assert cells(down) == ("0.1234", "[red]-0.0100[/]", "[red]▼ -7.50%[/]", " [yellow](stale)[/]")
    flat = {"price": 1000.0, "change": 0.0, "change_percent": 0.0, "market_time": None}
    assert cells(flat) == ("1,000.00", "[dim]+0.00[/]", "[dim]  +0.00%[/]", "")
    assert cells({"price": None}) == ("—", "", "", "")
    assert cells(None)[0] == "[dim]…[/]"
