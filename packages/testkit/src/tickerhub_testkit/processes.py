"""The real services as subprocesses, run by the same console scripts the images run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Self, TypeVar


def console_script(name: str) -> str:
    """Path of a console script installed beside the running interpreter (``poller``, ``api``)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"console script {name!r} not found beside {sys.executable}")
    return str(path)


class ServiceProcess:
    """One service subprocess; its output goes to a log file a failing test can show."""

    def __init__(self, script: str, env: Mapping[str, str], args: list[str] | None = None) -> None:
        self.script = script
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.args = args or []
        self.log_path = Path(tempfile.mkstemp(prefix=f"tickerhub-{script}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [console_script(self.script), *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tempfile.gettempdir(),  # no stray .env from the repo
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        from tickerhub_testkit.wait import eventually_blocking

        def seen() -> bool:
            if text in self.output():
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.script} exited ({self.proc.returncode})")
            return False

        eventually_blocking(
            seen, f"{text!r} in {self.script} output", limit=timeout, detail=self.output
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait; returns the exit code (kills after ``timeout``)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


P = TypeVar("P", bound=ServiceProcess)


class ApiProcess(ServiceProcess):
    """The ``api`` console script on a free port of 127.0.0.1."""

    def __init__(self, redis_url: str, **env: str) -> None:
        from tickerhub_testkit.net import free_port

        self.port = int(env.pop("PORT", 0)) or free_port()
        base = {"REDIS_URL": redis_url, "PORT": str(self.port), "HOST": "127.0.0.1"}
        super().__init__("api", {"LOG_LEVEL": "INFO", **base, **env})

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> ApiProcess:
        """Until ``/readyz`` answers 200 (Redis reachable, snapshot loaded)."""
        import httpx

        from tickerhub_testkit.net import wait_for_port
        from tickerhub_testkit.wait import eventually_blocking

        def ready() -> bool:
            assert self.alive, f"api exited:\n{self.output()}"
            try:
                return httpx.get(f"{self.http}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for_port(self.port, timeout=timeout)
        eventually_blocking(ready, "api /readyz 200", limit=timeout, detail=self.output)
        return self


class Procs:
    """Services a test started, stopped (SIGTERM, then SIGKILL) when it ends: the ``procs``
    fixture. Calling it starts a process and returns it."""

    def __init__(self) -> None:
        self.started: list[ServiceProcess] = []

    def __call__(self, proc: P) -> P:
        self.started.append(proc)  # registered first: stopped even if start fails half-way
        proc.start()
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop(timeout=10)


def start_api(procs: Procs, redis_url: str, **env: str) -> ApiProcess:
    """The api as a subprocess on a free port (stopped with the test), once it is ready."""
    return procs(ApiProcess(redis_url, **env)).wait_ready()


def poller_process(redis_url: str, tickers: Iterable[str], **env: str) -> ServiceProcess:
    """The ``poller`` console script on the simulated source, polling fast, no news."""
    base = {
        "REDIS_URL": redis_url,
        "SOURCE": "simulated",
        "TICKERS": ",".join(tickers),
        "POLL_FREQ": "0.05",
        "NEWS_INTERVAL": "0",
        "LOG_LEVEL": "INFO",
        # No metrics server unless a test asks (METRICS_PORT=<free port>): tests run
        # pollers side by side, and the default port would be taken by the first.
        "METRICS_PORT": "0",
    }
    return ServiceProcess("poller", {**base, **env})
