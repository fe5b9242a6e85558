"""The client worker processes: forked once, driven over pipes, counted in shared memory."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
from typing import Any

from tickerhub_bench.client import CTR_WIDTH, PUB_SLOTS, worker_main

CALL_TIMEOUT = 180.0  # no worker command takes longer: a scenario always ends


class Workers:
    """The client worker processes and their shared memory."""

    def __init__(self, count: int) -> None:
        ctx = mp.get_context("fork")
        self.pub = ctx.RawArray("q", PUB_SLOTS)
        self.counters = ctx.RawArray("q", count * CTR_WIDTH)
        self.conns = []
        self.procs = []
        for wid in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=(wid, child, self.pub, self.counters), daemon=True
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    async def call(self, wid: int, name: str, *args: Any) -> Any:
        conn = self.conns[wid]
        conn.send((name, args))

        def wait() -> Any:
            limit = CALL_TIMEOUT * (5 if name == "connect" else 1)
            if not conn.poll(limit):
                raise TimeoutError(f"worker {wid} did not answer {name} in {limit}s")
            return conn.recv()

        status, result = await asyncio.get_running_loop().run_in_executor(None, wait)
        if status != "ok":
            raise RuntimeError(f"worker {wid} {name}: {result}")
        return result

    async def all(self, name: str, *args: Any) -> list[Any]:
        return await asyncio.gather(*(self.call(w, name, *args) for w in range(len(self.conns))))

    async def each(self, name: str, per_worker: list[tuple[Any, ...]]) -> list[Any]:
        return await asyncio.gather(*(self.call(w, name, *a) for w, a in enumerate(per_worker)))

    def counter(self, index: int) -> int:
        return sum(self.counters[w * CTR_WIDTH + index] for w in range(len(self.conns)))

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.send(("exit", ()))
        for proc in self.procs:
            proc.join(timeout=3)
            if proc.is_alive():
                proc.terminate()
