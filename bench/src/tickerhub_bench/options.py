"""What one ``tickerhub-bench`` run was asked to do (built by ``cli.parse``)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Options:
    targets: list[str]
    workers: int
    full: bool
    only: list[str] | None
    api_cmd: list[str] | None
    redis_url: str | None
    api_url: str | None
    api_pid: int | None
    baseline_url: str | None
    profile_seconds: float
    connect_concurrency: int = 200
    clients: int | None = None  # override every scenario's client count (smoke runs)
    quiet: bool = False
    json: bool = False
    json_out: str | None = None
    logdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tickerhub-bench-")))
