"""The Docker Compose stack as a user runs it: a fresh copy of the repository, `make start`.

Runs only where `docker compose version` works and a Docker engine answers (on this
offline machine: after ../shared/tools/container-standins.sh, which .ci/run runs);
skipped with the reason elsewhere (a failure instead when TICKERHUB_REQUIRE_COMPOSE is
set, as .ci/run and the GitHub workflow do where an engine must be). Whatever happens, the project is taken down at the
end (`docker compose down -v --remove-orphans --rmi local`), so nothing keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tickerhub_testkit.net import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("redis", "poller", "api")
# Containers per service: two pollers (one leads, one stands by: docs/deploy.md).
REPLICAS = {"redis": 1, "poller": 2, "api": 1}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "compose: runs the Docker Compose stack (needs Docker + Compose v2.24+)"
    )


def docker_unavailable() -> str | None:
    """Why the compose test cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH (install Docker Engine + Compose v2, or Docker Desktop)"
    try:
        version = subprocess.run(
            ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30
        )
        if version.returncode != 0:
            return f"'docker compose version' failed: {version.stderr.strip()[:200]}"
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        return f"{' '.join(exc.cmd)} did not answer within 30 s"
    if info.returncode != 0:
        return f"no Docker engine answers ('docker info' failed): {info.stderr.strip()[:200]}"
    return None


def fresh_clone(dest: Path) -> Path:
    """The files a clone of this checkout would have (tracked + new, not ignored ones)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. a tarball)
        local = shutil.ignore_patterns(".git", ".venv", ".env", "__pycache__", ".*cache")
        return Path(shutil.copytree(ROOT, dest, ignore=local))
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the worktree is not in a clone
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


class Stack:
    """One Compose project in its own directory, project name and API port."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.project = f"tickerhub-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")},
            "COMPOSE_PROJECT_NAME": self.project,
            "API_PORT": str(self.port),
        }

    def run(self, *argv: str, timeout: float = 600, check: bool = False) -> Any:
        result = subprocess.run(
            argv, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> Any:
        return self.run("docker", "compose", *args, timeout=timeout, check=check)

    def containers(self) -> list[dict[str, Any]]:
        """`docker compose ps -a` as dicts (JSON lines since v2.21; an array before)."""
        out = self.compose("ps", "-a", "--format", "json").stdout.strip()
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def health(self) -> dict[str, str]:
        """Container name -> its health (or state, for a container without a check)."""
        return {c["Name"]: c.get("Health") or c.get("State", "") for c in self.containers()}

    def all_healthy(self) -> bool:
        """Every service has its replicas, each healthy."""
        containers = self.containers()
        counts = {s: sum(c["Service"] == s for c in containers) for s in SERVICES}
        return counts == REPLICAS and all(
            (c.get("Health") or c.get("State")) == "healthy" for c in containers
        )

    def logs(self) -> str:
        with contextlib.suppress(Exception):
            return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout
        return "(no logs)"

    async def wait_healthy(self, limit: float) -> None:
        """Poll `docker compose ps` (one call at a time, off the event loop) until every
        service is healthy; a cancelled or timed-out test stops it at once."""
        deadline = time.monotonic() + limit
        while not await asyncio.to_thread(self.all_healthy):
            if time.monotonic() > deadline:
                health = await asyncio.to_thread(self.health)
                logs = await asyncio.to_thread(self.logs)
                raise AssertionError(f"not all healthy after {limit:.0f} s: {health}\n{logs}")
            await asyncio.sleep(1)

    def down(self) -> None:
        self.compose(
            "down", "-v", "--remove-orphans", "--rmi", "local", "--timeout", "5",
            timeout=180, check=False,
        )  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    reason = docker_unavailable()
    if reason and os.environ.get("TICKERHUB_REQUIRE_COMPOSE"):
        pytest.fail(f"TICKERHUB_REQUIRE_COMPOSE is set but {reason}")
    if reason:
        pytest.skip(reason)
    stack = Stack(fresh_clone(tmp_path / "tickerhub"))
    try:
        yield stack
    finally:
        stack.down()
        left = stack.run(
            "docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={stack.project}"
        )
        assert left.stdout.strip() == "", f"containers left behind: {left.stdout}"
