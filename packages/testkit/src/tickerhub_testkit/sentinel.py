"""A real Redis Sentinel setup on free ports: a primary, one replica, three sentinels.

Debian's ``redis-server`` carries Sentinel (``redis-server <conf> --sentinel``;
the ``redis-sentinel`` package only adds a symlink and a service unit), so no
other package is needed. ``redis-sentinel`` is used when it is on PATH.

Failover is tuned to take a few seconds: a sentinel calls the primary down after
``DOWN_AFTER_MS`` without an answer, two of three agree (quorum 2), one is elected
and promotes the replica.

Every process is started in this object's own temp dir (each sentinel rewrites
its config file, so each needs a writable one) and :meth:`close` stops them all,
SIGKILL if SIGTERM is not enough; the ``sentinel_cluster`` fixture calls it
whatever the test did.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import redis

from tickerhub_testkit.net import free_port, wait_for_port
from tickerhub_testkit.wait import eventually_blocking

MASTER = "tickerhub"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
SENTINELS = 3


class SentinelCluster:
    def __init__(self, master: str = MASTER, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: install the Debian package 'redis-server' "
                "(bash .ci/run does this for you)"
            )
        self._server = binary
        self._sentinel = shutil.which("redis-sentinel")
        self.master = master
        # The sentinels' own ``requirepass`` (the data servers have none).
        self.password = password
        self._dir = Path(tempfile.mkdtemp(prefix="tickerhub-sentinel-"))
        self.data_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(SENTINELS)]
        self._nowhere = free_port()  # nothing is started on it
        # port -> process; a killed server stays in the map with its exit status.
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- what a service is configured with --------------------------------------

    @property
    def sentinels(self) -> str:
        """``REDIS_SENTINELS`` for the services."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def env(self) -> dict[str, str]:
        """Environment for a service subprocess (``REDIS_URL`` only gives the db here)."""
        env = {"REDIS_SENTINELS": self.sentinels, "REDIS_SENTINEL_MASTER": self.master}
        if self.password is not None:
            env["REDIS_SENTINEL_PASSWORD"] = self.password
        return env

    @property
    def redis_url(self) -> str:
        """A REDIS_URL whose host/port lead nowhere: with sentinels it must not be used."""
        return f"redis://127.0.0.1:{self._nowhere}/0"

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> SentinelCluster:
        primary, replica = self.data_ports
        self._start_server(primary)
        self._start_server(replica, "--replicaof", "127.0.0.1", str(primary))
        for port in self.sentinel_ports:
            self._start_sentinel(port, primary)
        self.wait_settled(primary)
        return self

    def _start_server(self, port: int, *extra: str) -> None:
        self._spawn(
            port,
            [
                self._server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir),
                "--dbfilename",
                f"dump-{port}.rdb",
                "--logfile",
                str(self._dir / f"redis-{port}.log"),
                *extra,
            ],
        )

    def _start_sentinel(self, port: int, primary: int) -> None:
        conf = self._dir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {self._dir}\n"
            f"logfile {self._dir / f'sentinel-{port}.log'}\n"
            f"sentinel monitor {self.master} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {self.master} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.master} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {self.master} 1\n"
            # Sentinels use their own requirepass with each other too.
            + (f"requirepass {self.password}\n" if self.password is not None else "")
        )
        if self._sentinel is not None:
            command = [self._sentinel, str(conf)]
        else:
            command = [self._server, str(conf), "--sentinel"]
        self._spawn(port, command)

    def _spawn(self, port: int, command: list[str]) -> None:
        self._procs[port] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(port)

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and remove the temp dir."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- looking and breaking ------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """Every process this cluster started (servers and sentinels)."""
        return [proc.pid for proc in self._procs.values()]

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels that answer agree on (None: no agreement)."""
        answers = set()
        for port in self.sentinel_ports:
            if self._procs[port].poll() is not None:
                continue
            with self._sentinel_client(port, socket_timeout=2) as sentinel:
                try:
                    addr = sentinel.sentinel_get_master_addr_by_name(self.master)
                except redis.RedisError:
                    return None
            answers.add(int(addr[1]) if addr else None)
        return answers.pop() if len(answers) == 1 else None

    def _sentinel_client(self, port: int, socket_timeout: float) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=socket_timeout, password=self.password)

    def client(self, port: int | None = None) -> redis.Redis:
        """A plain client on ``port`` (default: the current primary); the caller closes it."""
        return redis.Redis(port=port or self.primary_port() or self.data_ports[0])

    def kill_primary(self) -> int:
        """SIGKILL the current primary (no goodbye to anyone); its port is returned."""
        port = self.primary_port()
        assert port is not None, "the sentinels do not agree on a primary"
        self._procs[port].send_signal(signal.SIGKILL)
        self._procs[port].wait()
        return port

    def demote_primary(self) -> int:
        """``SENTINEL FAILOVER``: the sentinels promote the replica and turn the primary,
        still running, into its replica (clients still on it get READONLY); its port."""
        port = self.primary_port()
        assert port is not None, "the sentinels do not agree on a primary"
        with self._sentinel_client(self.sentinel_ports[0], socket_timeout=5) as sentinel:
            sentinel.sentinel_failover(self.master)
        return port

    def wait_failover(self, old_port: int, limit: float = 60.0) -> int:
        """Until every sentinel names a new primary and it answers as one; its port."""

        def promoted() -> bool:
            port = self.primary_port()
            if port is None or port == old_port:
                return False
            with self.client(port) as client:
                try:
                    return bool(client.info("replication")["role"] == "master")
                except redis.RedisError:
                    return False

        eventually_blocking(
            promoted, "the sentinels to promote the replica", limit=limit, detail=self.logs
        )
        new_port = self.primary_port()
        assert new_port is not None
        return new_port

    def wait_settled(self, primary: int, limit: float = 60.0) -> None:
        """Until every sentinel knows the replica (in sync) and the two other sentinels:
        only then can they fail over."""

        def settled() -> bool:
            try:
                with self.client(self.data_ports[1]) as replica:
                    if replica.info("replication").get("master_link_status") != "up":
                        return False
                for port in self.sentinel_ports:
                    with self._sentinel_client(port, socket_timeout=2) as sentinel:
                        fields = sentinel.sentinel_master(self.master)
                    if int(fields["port"]) != primary or int(fields["num-slaves"]) < 1:
                        return False
                    if int(fields["num-other-sentinels"]) < SENTINELS - 1:
                        return False
            except redis.RedisError:
                return False  # still starting: the next round
            return True

        eventually_blocking(
            settled,
            "the sentinels to see the replica and each other",
            limit=limit,
            detail=self.logs,
        )

    def logs(self) -> str:
        """Every server's and sentinel's log, for a failing test's message."""
        return "\n".join(
            f"== {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self._dir.glob("*.log"))
        )
