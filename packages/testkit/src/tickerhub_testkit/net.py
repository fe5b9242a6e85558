"""Free ports and waiting for sockets."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from tickerhub_testkit.wait import eventually_blocking

# Ports handed out by this process: never twice (a server is often started well
# after its port was chosen, so the kernel could offer the same one again).
_given: set[int] = set()


def _ephemeral_low() -> int | None:
    """The lowest port the kernel picks for outgoing connections (Linux), if known."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on, not handed out before by this process.

    Chosen below the kernel's ephemeral range when it is known (Linux: 32768 and
    up by default), so that no outgoing connection (Redis replication, a client)
    takes it as its source port between now and the server's start: port 0 would
    hand out exactly those. Seen: a Sentinel test whose sentinel and primary got
    the same port.
    """
    low = _ephemeral_low()
    if low is not None and low > 12_000:
        for _ in range(500):
            port = random.randrange(10_000, low)
            if port not in _given and _bindable(port):
                _given.add(port)
                return port
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
    raise RuntimeError("no free port found")


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    eventually_blocking(listening, f"something listening on {host}:{port}", limit=timeout)
