"""``tickerhub watch`` as a user runs it: a subprocess against the real api, under a pty
for the live table (Ctrl-C must exit 0), plainly for ``--once`` and a bad key."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from typing import Any

import httpx
import pytest

from tickerhub_testkit.processes import Procs, console_script, poller_process, start_api
from tickerhub_testkit.wait import WAIT, eventually_blocking

from .conftest import KEY

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def read_until(fd: int, proc: subprocess.Popen[bytes], pattern: re.Pattern[str]) -> str:
    """Terminal output (ANSI codes removed) until ``pattern`` matches it."""
    seen = b""
    deadline = time.monotonic() + WAIT
    while True:
        text = ANSI.sub("", seen.decode(errors="replace"))
        if pattern.search(text):
            return text
        assert proc.poll() is None, f"tickerhub exited ({proc.returncode}):\n{text}"
        assert time.monotonic() < deadline, f"{pattern.pattern!r} never shown:\n{text[-3000:]}"
        if select.select([fd], [], [], 0.2)[0]:
            seen += os.read(fd, 65536)


def test_watch_shows_a_live_table_and_exits_zero_on_sigint(redis_server: Any, procs: Procs) -> None:
    procs(poller_process(redis_server.url, ["AAPL", "MSFT", "TSLA"]))
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
    proc = subprocess.Popen(
        [console_script("tickerhub"), "watch", "AAPL", "msft", "--url", api.ws],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "110", "LINES": "30"},
    )
    os.close(slave)
    try:
        # Both rows with a price and a signed change %, and the seq of a live stream.
        row = r"{}\s*│\s*[\d,]+\.\d+\s*│[^\n]*[▲▼ ] [+-]\d+\.\d\d%"
        read_until(master, proc, re.compile(row.format("AAPL")))
        text = read_until(master, proc, re.compile(row.format("MSFT")))
        assert "TSLA" not in text  # only the watched symbols
        assert re.search(r"seq \d+", text)
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + WAIT
        while proc.poll() is None:  # keep reading: a full pty would block its writes
            assert time.monotonic() < deadline, "tickerhub ignored SIGINT"
            if select.select([master], [], [], 0.1)[0]:
                try:
                    os.read(master, 65536)
                except OSError:  # EIO: the child closed the pty, it is exiting
                    break
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_watch_once_prints_the_quotes_rest_serves(redis_server: Any, procs: Procs) -> None:
    poller = procs(poller_process(redis_server.url, ["AAPL", "MSFT"]))
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING")
    eventually_blocking(
        lambda: set(httpx.get(f"{api.http}/tickers").json()) == {"AAPL", "MSFT"},
        "AAPL and MSFT in GET /tickers",
        interval=0.1,
    )
    assert poller.stop() == 0
    rest = httpx.get(f"{api.http}/tickers").json()
    done = subprocess.run(
        [console_script("tickerhub"), "watch", "MSFT", "AAPL", "--url", api.http, "--once"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
    for symbol in ("AAPL", "MSFT"):
        quote = rest[symbol]
        line = next(line for line in done.stdout.splitlines() if f" {symbol} " in line)
        assert f"{quote['price']:,.2f}" in line
        assert f"{quote['change_percent']:+.2f}%" in line
    assert done.stdout.index("MSFT") < done.stdout.index("AAPL")  # the order asked for


def test_watch_with_a_bad_key_exits_one_with_the_reason(redis_server: Any, procs: Procs) -> None:
    api = start_api(procs, redis_server.url, LOG_LEVEL="WARNING", API_KEYS=KEY)
    done = subprocess.run(
        [console_script("tickerhub"), "watch", "AAPL", "--url", api.ws],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "TICKERHUB_API_KEY": "not-the-key-but-long-enough"},
    )
    assert done.returncode == 1
    assert "1008" in done.stderr
    assert "invalid API key" in done.stderr
    good = subprocess.run(
        [console_script("tickerhub"), "watch", "AAPL", "--url", api.ws, "--key", KEY, "--once"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert good.returncode == 0, good.stderr
    assert "AAPL" in good.stdout


def test_max_rate_option_is_checked_and_passed() -> None:
    from tickerhub_client.cli import parse_args

    assert parse_args(["watch", "AAPL", "--max-rate", "2"]).max_rate == 2.0
    assert parse_args(["watch", "AAPL"]).max_rate is None
    for bad in ("0", "500", "fast"):
        with pytest.raises(SystemExit) as info:
            parse_args(["watch", "AAPL", "--max-rate", bad])
        assert info.value.code == 2
