"""Container healthcheck: ``python -m tickerhub_poller.healthcheck``.

The poller has no HTTP port, so its publisher touches ``HEARTBEAT_FILE`` each
time it has confirmed Redis holds its snapshot (at least every 5 s), and a standby
poller (another one holds the lease) each time it has reloaded the snapshot from
Redis (every ``LEASE_TTL``): alive and ready to lead is healthy. Healthy means:
that happened within ``MAX_AGE`` seconds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

MAX_AGE = 30.0


class Heartbeat:
    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def __call__(self) -> None:
        self._path.touch()


def check(path: str, max_age: float = MAX_AGE, now: float | None = None) -> str | None:
    """None when healthy, else why not."""
    try:
        age = (time.time() if now is None else now) - Path(path).stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat yet at {path}"
    if age > max_age:
        return (
            f"last heartbeat {age:.0f}s ago (limit {max_age:.0f}s): "
            "Redis unreachable or poller stuck"
        )
    return None


def main() -> None:
    path = os.environ.get("HEARTBEAT_FILE")
    if not path:
        print("HEARTBEAT_FILE is not set", file=sys.stderr)
        sys.exit(1)
    problem = check(path)
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
