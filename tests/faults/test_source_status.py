"""``GET /status`` with real processes: redis-server, a poller, an api.

The poller runs its real ``main``: on the simulated source for the healthy case,
and on SOURCE=yfinance with FakeYahoo on the wire (``yahoo_poller.py``) made to
fail like a machine without DNS, then to answer again. What is checked is what
a user sees: the ``/status`` body and the poller's log.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tickerhub_testkit.net import free_port
from tickerhub_testkit.processes import ApiProcess, Procs, ServiceProcess, start_api
from tickerhub_testkit.wait import eventually

from .conftest import TICKERS, get_json, poller_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LAUNCHER = Path(__file__).with_name("yahoo_poller.py")
YAHOO_TICKERS = ("AAPL", "MSFT")


class FakeYahooPoller(ServiceProcess):
    """``yahoo_poller.py``: the poller's ``main`` with FakeYahoo, switched by a file."""

    def __init__(self, redis_url: str, state: Path, **env: str) -> None:
        self.state = state
        state.write_text("up")
        base = {
            "REDIS_URL": redis_url,
            "SOURCE": "yfinance",
            "TICKERS": ",".join(YAHOO_TICKERS),
            "POLL_FREQ": "0.2",
            "NEWS_INTERVAL": "1",
            "REQUEST_TIMEOUT": "5",
            "LOG_LEVEL": "INFO",
            "METRICS_PORT": "0",
            "FAKE_YAHOO_STATE": str(state),
            # The subject is polling; the push stream (its own entry, tested in
            # services/poller/tests/test_poller_stream.py) would keep the state degraded.
            "STREAM": "off",
        }
        super().__init__("poller", {**base, **env})

    def start(self) -> FakeYahooPoller:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER)], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def yahoo(self, state: str) -> None:
        self.state.write_text(state)


async def status_where(api: ApiProcess, what: str, check: Any) -> dict[str, Any]:
    async def matching() -> dict[str, Any] | None:
        body = await get_json(f"{api.http}/status")
        return body if check(body) else None

    return await eventually(matching, what, limit=60)


def poll_state(body: dict[str, Any]) -> str | None:
    producer = body.get("producer")
    return producer["sources"]["poll"]["state"] if producer else None


def lines(proc: ServiceProcess, text: str) -> list[str]:
    return [line for line in proc.output().splitlines() if text in line]


async def test_ok_on_a_healthy_source_then_expires_when_the_poller_dies(
    redis_server: Any, procs: Procs
) -> None:
    poller = procs(poller_process(redis_server.url))
    api = start_api(procs, redis_server.url)
    body = await status_where(api, "/status ok", lambda b: b["state"] == "ok")
    producer = body["producer"]
    assert producer["source"] == "simulated"
    assert producer["symbols"] == {"static": len(TICKERS), "on_demand": 0}
    poll = producer["sources"]["poll"]
    assert poll["state"] == "ok"
    assert poll["consecutive_failures"] == 0
    assert poll["last_error"] is None
    assert poll["last_success"] is not None
    assert poll["requests"] > 0
    assert producer["age_s"] is not None
    assert producer["age_s"] < 10
    assert body["api"]["redis"] is True
    assert body["api"]["snapshot"] is True
    assert body["api"]["epoch"]
    assert body["note"] is None

    poller.kill()  # no goodbye: the key must expire on its own
    gone = await status_where(api, "/status: producer gone", lambda b: b["state"] == "no_producer")
    assert gone["producer"] is None
    assert "no poller has reported" in gone["note"]
    assert gone["api"]["redis"] is True  # the api itself is fine
    ready = await get_json(f"{api.http}/readyz")  # /readyz stays about the api
    assert ready["status"] == "ready"


async def test_the_poller_without_network_says_down_once(redis_server: Any, procs: Procs) -> None:
    """The `make run` offline case, with the real console script and real yfinance: every
    request goes through a proxy nobody listens on, so no machine reaches Yahoo here."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    poller = procs(
        poller_process(
            redis_server.url,
            SOURCE="yfinance",
            POLL_FREQ="0.5",
            NEWS_INTERVAL="1",
            HTTPS_PROXY=nowhere,
            HTTP_PROXY=nowhere,
            https_proxy=nowhere,
            http_proxy=nowhere,
            NO_PROXY="",
            no_proxy="",
            # As `make run`: yfinance on curl_cffi. This process may have set it to 1
            # (the offline Yahoo seam does), and yfinance 1.7's cookie fetch breaks
            # with requests on any network error (AttributeError: no DNSError).
            YF_DISABLE_CURL_CFFI="0",
        )
    )
    api = start_api(procs, redis_server.url)
    body = await status_where(
        api,
        "/status down after many failed requests",
        lambda b: (
            poll_state(b) == "down"
            and b["producer"]["sources"]["poll"]["consecutive_failures"] >= 10
        ),
    )
    error = body["producer"]["sources"]["poll"]["last_error"]
    assert error["type"] == "SourceUnavailableError"
    assert error["message"].startswith("Yahoo unreachable: "), error
    assert "127.0.0.1" not in error["message"]
    output = poller.output()
    # One line per condition: polling fails (not one per retry, feed, symbol, or from
    # yfinance), and the push stream cannot connect (its own, also once).
    warnings = [line for line in output.splitlines() if " WARNING " in line]
    polling = [line for line in warnings if "tickerhub_poller.status:" in line]
    stream = [line for line in warnings if "tickerhub_yahoo.streamer: stream:" in line]
    assert len(polling) == 1, output
    assert "tickerhub_poller.status: yfinance: Yahoo unreachable: " in polling[0]
    assert polling[0].endswith("; retrying with backoff")
    assert len(stream) <= 1, output
    assert sorted(warnings) == sorted(polling + stream), output
    assert " yfinance: Cookie" not in output
    ready = await get_json(f"{api.http}/readyz")
    assert ready["status"] == "ready"  # /readyz stays about the api


async def test_yahoo_unreachable_is_down_with_one_log_line_then_recovers(
    redis_server: Any, procs: Procs, tmp_path: Path
) -> None:
    poller = FakeYahooPoller(redis_server.url, tmp_path / "yahoo-state")
    poller.yahoo("down")  # from the start, like `make run` without network
    procs(poller)
    api = start_api(procs, redis_server.url)

    # Many failed requests (news every second, quotes with backoff) ...
    down = await status_where(
        api,
        "/status down after several failures",
        lambda b: (
            poll_state(b) == "down"
            and b["producer"]["sources"]["poll"]["consecutive_failures"] >= 6
        ),
    )
    assert down["state"] == "down"
    poll = down["producer"]["sources"]["poll"]
    assert poll["last_success"] is None
    assert poll["last_error"]["type"] == "SourceUnavailableError"
    assert poll["last_error"]["message"] == "Yahoo unreachable: ConnectionError"
    assert poll["failing_symbols"] == len(YAHOO_TICKERS)
    # ... and one log line for them: no line per retry, per feed, or from yfinance.
    unreachable = lines(poller, "Yahoo unreachable")
    assert len(unreachable) == 1, poller.output()
    assert "yfinance: Yahoo unreachable: ConnectionError" in unreachable[0]
    assert "retrying with backoff" in unreachable[0]
    assert "WARNING" in unreachable[0]
    assert lines(poller, "Cookie/crumb fetch failed") == [], poller.output()
    assert lines(poller, "yfinance quotes:") == [], poller.output()
    assert lines(poller, "yfinance news:") == [], poller.output()
    assert "query1.finance.yahoo.com" not in str(poll["last_error"])

    poller.yahoo("up")
    fine = await status_where(api, "/status ok again", lambda b: b["state"] == "ok")
    poll = fine["producer"]["sources"]["poll"]
    assert poll["consecutive_failures"] == 0
    assert poll["failing_symbols"] == 0
    assert poll["last_success"] is not None
    assert poll["last_error"]["message"] == "Yahoo unreachable: ConnectionError"  # kept
    recovered = lines(poller, "yfinance: recovered after")
    assert len(recovered) == 1, poller.output()
    quotes = await get_json(f"{api.http}/tickers")
    assert set(quotes) == set(YAHOO_TICKERS)

    # Yahoo fails again after a good spell: down again, the lines stay bounded.
    poller.yahoo("down")
    await status_where(api, "/status down again", lambda b: b["state"] == "down")
    again = await status_where(
        api,
        "several more failures",
        lambda b: b["producer"]["sources"]["poll"]["consecutive_failures"] >= 6,
    )
    assert again["state"] == "down"
    # One more line for this outage (the first failed batch may add its own, logged
    # before the source counts as down); none per symbol going stale, none per retry.
    assert len(lines(poller, "yfinance: Yahoo unreachable")) == 2, poller.output()
    assert len(lines(poller, "yfinance quotes:")) <= 1, poller.output()
    assert len(lines(poller, "yfinance news:")) <= 1, poller.output()
    assert lines(poller, "marked stale") == [], poller.output()
    assert lines(poller, "Cookie/crumb fetch failed") == [], poller.output()
    assert "Traceback" not in poller.output()
