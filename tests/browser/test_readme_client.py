"""The README's "Client example", run as written in headless Chromium against the real api.

The snippet is read from README.md at test time (so this test breaks when the README
changes); only the port in its URL is replaced, because the api runs on a free port.
It runs in a page served from localhost by a thread; the page records what the snippet
logs. Chromium is driven over the Chrome DevTools Protocol (its own WebSocket): one
``Runtime.evaluate`` poll of the recorded log at a time, nothing else.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped when there is none.
The CDP driver is ``tickerhub_testkit.chromium`` (shared with test_board.py).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tickerhub_testkit.chromium import Browser, find_chromium, headless_chromium
from tickerhub_testkit.net import free_port, wait_for_port
from tickerhub_testkit.processes import Procs, ServiceProcess
from tickerhub_testkit.redis_server import RedisServer
from tickerhub_testkit.wait import eventually_blocking

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "ws://localhost:8000/ws/prices"
WATCHED = {"AAPL", "MSFT"}
WAIT = 20.0  # generous: only to avoid hanging
# The page: records console.log/warn/error (what the snippet "shows"), and shortens
# setInterval's delay so the snippet's 30 s `ping` fires within the test. Both are
# installed before the snippet runs; the snippet's own text is untouched.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>README client example</title></head>
<body><pre id="log"></pre>
<script>
window.__logs = [];
for (const level of ["log", "warn", "error"]) {
  console[level] = (...args) => {
    let recorded;
    try { recorded = JSON.parse(JSON.stringify(args)); }
    catch { recorded = args.map(String); }
    window.__logs.push({ level, args: recorded });
    document.getElementById("log").textContent +=
      level + " " + args.map(a => typeof a === "string" ? a : JSON.stringify(a)).join(" ") + "\\n";
  };
}
// Test only: the snippet pings every 30 s; fire that every 0.3 s instead.
const realSetInterval = window.setInterval.bind(window);
window.setInterval = (fn, delay, ...rest) => realSetInterval(fn, Math.min(delay, 300), ...rest);
</script>
<script>
__SNIPPET__
</script>
</body></html>
"""


def readme_snippet() -> str:
    """The ```js block under "## Client example" in README.md, verbatim."""
    match = re.search(r"^## Client example\n+```js\n(.*?)^```", README.read_text(), re.M | re.S)
    assert match, "README.md has no ```js block under '## Client example'"
    return match.group(1)


# -- the page, served from localhost ---------------------------------------------------


@contextlib.contextmanager
def serve_page(body: str) -> Iterator[str]:
    """Serve ``body`` at ``/`` on a free localhost port from a thread; yields the URL."""
    payload = body.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# -- what the page logged ------------------------------------------------------------


def updates(logs: list[dict[str, Any]]) -> list[Any]:
    return [e["args"][1] for e in logs if e["level"] == "log" and e["args"][0] == "Update:"]


def after_watchlist(logs: list[dict[str, Any]]) -> list[Any]:
    """The updates from the answer to the snippet's watchlist message on (the connect
    snapshot and any diff before that answer are for every symbol)."""
    received = updates(logs)
    for i, message in enumerate(received):
        if "watchlist" in message:
            return received[i:]
    return []


def merged(messages: list[Any]) -> dict[str, dict[str, Any]]:
    """docs/protocol.md's merged view: a snapshot replaces, a diff merges field by field."""
    view: dict[str, dict[str, Any]] = {}
    for message in messages:
        if message["type"] == "snapshot":
            if not message.get("partial"):
                view.clear()
            view.update({s: dict(q) for s, q in message["data"].items()})
        elif message["type"] == "diff":
            for symbol, fields in message["data"].items():
                view.setdefault(symbol, {}).update(fields)
    return view


def wait_for(condition: Callable[[], bool], what: str, browser: Browser) -> None:
    eventually_blocking(condition, what, limit=WAIT, interval=0.1, detail=browser.output)


# -- the test ----------------------------------------------------------------------------


@pytest.fixture
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    return binary


def test_readme_client_example_in_chromium(
    chromium: str,
    redis_server: RedisServer,
    procs: Procs,
    tmp_path: Path,
) -> None:
    snippet = readme_snippet()
    assert snippet.count(README_URL) == 1, f"the README example no longer opens {README_URL}"
    assert "</script" not in snippet.lower()

    poller = procs(
        ServiceProcess(
            "poller",
            {
                "REDIS_URL": redis_server.url,
                "SOURCE": "simulated",
                "TICKERS": "AAPL,MSFT,GOOGL",
                "POLL_FREQ": "0.1",
                "NEWS_INTERVAL": "0",
            },
        )
    )
    api_port = free_port()
    # The api as users run it: default HOST, only the port differs.
    api = procs(ServiceProcess("api", {"REDIS_URL": redis_server.url, "PORT": str(api_port)}))
    wait_for_port(api_port, timeout=WAIT)
    rest = f"http://127.0.0.1:{api_port}"

    def snapshot_served() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return set(httpx.get(f"{rest}/tickers", timeout=5).json()) >= WATCHED | {"GOOGL"}
        return False

    eventually_blocking(
        snapshot_served,
        "a snapshot with every ticker",
        limit=WAIT,
        detail=lambda: f"{api.output()}\n{poller.output()}",
    )

    url = README_URL.replace("localhost:8000", f"localhost:{api_port}")
    page = PAGE.replace("__SNIPPET__", snippet.replace(README_URL, url))
    with serve_page(page) as page_url, headless_chromium(chromium, page_url, tmp_path) as browser:
        logs: list[dict[str, Any]] = []

        def logged_enough() -> bool:
            logs[:] = browser.evaluate("window.__logs ?? []")
            diffs = [m for m in after_watchlist(logs) if m["type"] == "diff"]
            pongs = [e for e in logs if e["args"] == ["Non-JSON:", "pong"]]
            return len(diffs) >= 5 and len(pongs) >= 1

        wait_for(logged_enough, "a watchlist snapshot, 5 diffs and a pong", browser)

        # Convergence: with the poller stopped (it flushes on the way out), the page's
        # merged view must end up equal to what REST serves for the watched symbols.
        assert poller.stop() == 0, poller.output()
        expected: dict[str, Any] = {}
        view: dict[str, Any] = {}

        def converged() -> bool:
            snapshot = httpx.get(f"{rest}/tickers", timeout=5).json()
            expected.clear()
            expected.update({s: snapshot[s] for s in WATCHED})
            logs[:] = browser.evaluate("window.__logs ?? []")
            view.clear()
            view.update(merged(after_watchlist(logs)))
            return view == expected

        with contextlib.suppress(AssertionError):  # asserted below, after the log checks
            wait_for(converged, "the page's view to equal GET /tickers", browser)
        page_text = browser.evaluate("document.getElementById('log').textContent")

    # Nothing went wrong in the page: no errors, no close.
    assert [e for e in logs if e["level"] == "error"] == [], page_text[-3000:]
    assert ["Closed"] not in [e["args"] for e in logs], page_text[-3000:]
    # Everything but `pong` is JSON.
    warnings = [e["args"] for e in logs if e["level"] == "warn"]
    assert warnings, "no Non-JSON warning"
    assert all(w == ["Non-JSON:", "pong"] for w in warnings), warnings

    received = updates(logs)
    assert received[0]["type"] == "snapshot", received[0]  # on connect: every symbol
    first, *later = after_watchlist(logs)
    assert first["type"] == "snapshot", first
    assert not first.get("partial"), first
    assert first["watchlist"] == sorted(WATCHED), first
    assert set(first["data"]) == WATCHED, first
    assert first.get("unknown") == [], first
    assert later, "no update after the watchlist snapshot"
    assert {m["type"] for m in later} == {"diff"}, [m["type"] for m in later]
    assert all(set(m["data"]) <= WATCHED and m["data"] for m in later), later
    seqs = [m["seq"] for m in [first, *later]]
    assert seqs == sorted(seqs), seqs

    assert view == expected, f"page view {view}\n!= GET /tickers {expected}\n{page_text[-3000:]}"
