"""``make run`` (scripts/run_local.py) stops cleanly on a signal to its process group.

``timeout``, service managers and a closing terminal signal the whole group; Ctrl-C is
SIGINT to the group. ``make run`` goes through ``uv run``, which forwards its own copy
of the signal to the script, so the script gets it twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tickerhub_testkit.net import free_port
from tickerhub_testkit.redis_server import RedisServer
from tickerhub_testkit.wait import eventually_blocking

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_local.py"
WAIT = 60.0  # generous (three services start on a loaded machine): only to avoid hanging


def ready(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(
    ("sig", "forwarded"),
    [(signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["sigterm-plus-uv-copy", "sigint"],
)
def test_a_signal_to_the_group_stops_everything_and_exits_0(
    redis_server: RedisServer, tmp_path: Path, sig: signal.Signals, forwarded: bool
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SOURCE": "simulated",
        "NEWS_INTERVAL": "0",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT)],
            env=env,
            cwd=tmp_path,  # no .env from the repo
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,  # its own group, as a shell job or a service has
        )
    try:
        eventually_blocking(
            lambda: ready(port) or proc.poll() is not None,
            "the api started by make run answers /readyz",
            limit=WAIT,
            detail=log.read_text,
        )
        assert proc.poll() is None, log.read_text()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2, children  # the poller and the api (redis was running)
        os.killpg(proc.pid, sig)
        if forwarded:
            time.sleep(0.05)
            proc.send_signal(sig)  # the copy ``uv run`` forwards
        code = proc.wait(timeout=WAIT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "make run: stopped" in output
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], alive
