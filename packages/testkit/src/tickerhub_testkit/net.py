"""Free ports and waiting for sockets."""

from __future__ import annotations

import socket

from tickerhub_testkit.wait import eventually_blocking


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    eventually_blocking(listening, f"something listening on {host}:{port}", limit=timeout)
