"""``make run``: the hub without Docker (Redis, poller and api on this machine).

Uses the Redis at ``REDIS_URL`` if one answers; otherwise starts a throwaway
``redis-server`` for the session when one is installed and the URL points at
this machine. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

BIN = Path(sys.executable).parent


def redis_answers(url: str) -> bool:
    # A one-shot synchronous probe, polled while redis-server starts: not the services'
    # client (tickerhub_core.redis_client is asyncio, wants their settings object and
    # waits 5 s to connect), so a plain redis-py ping with a 1 s connect timeout.
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(url: str) -> subprocess.Popen[bytes] | None:
    parsed = urlparse(url)
    if parsed.hostname not in {"localhost", "127.0.0.1", "::1"}:
        sys.exit(f"make run: no Redis answers at {url}, and it is not on this machine.")
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit(
            f"make run: no Redis answers at {url} and redis-server is not installed.\n"
            "  Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install "
            "redis),\n  point REDIS_URL at a running Redis, or use 'make start' (Docker)."
        )
    port = parsed.port or 6379
    workdir = tempfile.mkdtemp(prefix="tickerhub-redis-")
    print(f"make run: starting redis-server on 127.0.0.1:{port} (data not kept)")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([binary, *args, "--dir", workdir], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"make run: redis-server did not start on port {port} (is the port taken?)")
        time.sleep(0.1)
    return proc


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of ``.env`` (the services read it too; we need REDIS_URL and PORT)."""
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def stop_on_signals() -> threading.Event:
    """SIGINT and SIGTERM set an event instead of raising.

    A signal to the process group (Ctrl-C, ``timeout``, a service manager, a closing
    terminal) reaches this script more than once: ``uv run`` forwards its own copy. A
    handler that raises would fire again inside the shutdown below and end it with a
    traceback; one that only sets a flag can fire any number of times.
    """
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    # Services first, Redis last, so they shut down cleanly instead of losing Redis.
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> int:
    env = {**read_dotenv(Path(".env")), **os.environ}
    url = env.setdefault("REDIS_URL", "redis://localhost:6379/0")
    stop = stop_on_signals()
    children: list[subprocess.Popen[bytes]] = []
    try:
        if not redis_answers(url):
            server = start_redis(url)
            if server is not None:
                children.append(server)
        port = env.get("PORT", "8000")
        children.append(subprocess.Popen([str(BIN / "poller")], env=env))
        children.append(subprocess.Popen([str(BIN / "api")], env=env))
        print(f"make run: http://localhost:{port}/tickers  ws://localhost:{port}/ws/prices")
        print(
            f"make run: board http://localhost:{port}/  source health http://localhost:{port}/status"
        )
        print("make run: Ctrl-C stops everything", flush=True)
        while not stop.wait(0.5):
            if any(child.poll() is not None for child in children):
                break
    finally:
        stop_children(children)
    if stop.is_set():
        print("make run: stopped", flush=True)
        return 0
    print("make run: a service exited; stopped the others", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
