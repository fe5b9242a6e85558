"""What the scenarios drive: the update injector, the servers under test, resource sampling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
from redis.asyncio import Redis

from tickerhub_bench.client import PUB_MASK
from tickerhub_bench.schedule import RateScheduler, SymbolCycler
from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_core.store import SnapshotStore

TICK = 0.01  # the injector publishes what is due every 10 ms


def make_symbols(count: int) -> list[str]:
    return [f"S{i:04d}" for i in range(count)]


def initial_quote(symbol: str, index: int) -> dict[str, Any]:
    price = 100.0 + index
    return {
        "symbol": symbol,
        "seq": 0,
        "name": f"Bench {symbol}",
        "price": price,
        "change": 0.0,
        "change_percent": 0.0,
        "previous_close": price,
        "open": price,
        "day_high": price,
        "day_low": price,
        "volume": 1000,
        "currency": "USD",
        "exchange": "BENCH",
        "market_state": "REGULAR",
        "market_time": "2026-11-25T14:30:00Z",
        "stale": False,
    }


def next_change(quote: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A realistic tick: price, change, change_percent, volume (and the day range when crossed)."""
    price = round(max(0.01, quote["price"] * (1 + rng.uniform(-0.002, 0.002))), 4)
    prev = quote["previous_close"]
    changed: dict[str, Any] = {
        "price": price,
        "change": round(price - prev, 4),
        "change_percent": round((price - prev) / prev * 100, 4),
        "volume": quote["volume"] + rng.randint(1, 500),
    }
    if price > quote["day_high"]:
        changed["day_high"] = price
    if price < quote["day_low"]:
        changed["day_low"] = price
    return changed


HEARTBEAT_TTL = 6 * 3600.0  # longer than any bench run


class Injector:
    """Publishes ``rate`` updates/s through ``PUBLISH_DIFF_LUA``, recording publish times."""

    def __init__(self, redis: Redis, keys: RedisKeys, symbols: Sequence[str], pub: Any) -> None:
        self.redis = redis
        self.store = SnapshotStore(redis, keys)
        self.symbols = list(symbols)
        self.quotes = {s: initial_quote(s, i) for i, s in enumerate(self.symbols)}
        self.pub = pub
        self.seq = 0
        self.rng = random.Random(7)
        self.cycler = SymbolCycler(self.symbols)
        self.published = 0  # updates (one symbol changing each)
        self.messages = 0
        self.per_symbol: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self.late_ticks = 0

    async def seed(self) -> None:
        await self.redis.flushall()
        await self.store.reset(0, {s: orjson.dumps(q) for s, q in self.quotes.items()})
        # Say a producer is alive, as the poller does, for the whole run: without it the
        # api serves every quote stale (and tells every client) while the bench is quiet.
        await self.store.beat(ttl=HEARTBEAT_TTL)
        self.seq = 0

    def final_seqs(self) -> dict[str, int]:
        return {s: q["seq"] for s, q in self.quotes.items()}

    async def publish(self, batch: list[str]) -> None:
        seq = self.seq + 1
        data: dict[str, dict[str, Any]] = {}
        full: dict[str, bytes] = {}
        for sym in batch:
            quote = self.quotes[sym]
            changed = next_change(quote, self.rng)
            quote.update(changed)
            quote["seq"] = seq
            changed["symbol"] = sym
            changed["seq"] = seq
            data[sym] = changed
            full[sym] = orjson.dumps(quote)
            self.per_symbol[sym] += 1
        now = time.time_ns()
        self.pub[seq & PUB_MASK] = now
        result = await self.store.publish_diff(
            self.seq, wire.diff_message(seq, data, ts=now // 1_000_000), full
        )
        if not result.ok:
            raise RuntimeError(f"publish_diff refused: redis seq {result.seq}, ours {self.seq}")
        self.seq = seq
        self.published += len(batch)
        self.messages += 1

    async def run(self, rate: float, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sched = RateScheduler(rate, start, max_burst=max(1, int(rate * 0.5)))
        end = start + seconds
        next_tick = start
        while True:
            now = loop.time()
            if now >= end:
                break
            for batch in self.cycler.take(sched.due(now)):
                await self.publish(batch)
            next_tick += TICK
            delay = next_tick - loop.time()
            if delay < 0:
                self.late_ticks += 1
                next_tick = loop.time()
                delay = 0
            await asyncio.sleep(delay)


@dataclass
class ServerProc:
    """A server under test: our api or the baseline, or an already running one."""

    kind: str  # "api" or "baseline"
    port: int
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/prices"

    def start(
        self,
        redis_url: str,
        logdir: Path,
        api_cmd: Sequence[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        env = dict(os.environ, REDIS_URL=redis_url, PORT=str(self.port), HOST="127.0.0.1")
        env.update(extra_env or {})
        env.setdefault("KEY_PREFIX", "")
        env.setdefault("LOG_LEVEL", "WARNING")
        if self.kind == "baseline":
            cmd = [sys.executable, "-m", "tickerhub_bench.baseline"]
        else:
            cmd = list(api_cmd or default_api_cmd())
        self.log = logdir / f"{self.kind}-{self.port}.log"  # the port tells two api runs apart
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while not ready(self.url):
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} not ready on {self.url}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as a crash: clients see their connections drop without a close frame."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def default_api_cmd() -> list[str]:
    script = Path(sys.executable).parent / "api"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tickerhub_api"]


def ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=1) as resp:
            return resp.status == 200
    except Exception:
        return False


def get_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return orjson.loads(resp.read())


@dataclass
class Usage:
    """CPU seconds and RSS of a set of processes (each with its children)."""

    pids: list[int]
    children: bool = True
    peak_rss: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)

    def _procs(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                procs.append(p)
                if self.children:
                    procs.extend(p.children(recursive=True))
        return procs

    def cpu(self) -> float:
        total = 0.0
        for p in self._procs():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss(self) -> int:
        total = 0
        for p in self._procs():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def sample(self) -> int:
        rss = self.rss()
        self.peak_rss = max(self.peak_rss, rss)
        self.samples.append((time.monotonic(), rss))
        return rss


def watchers_of(
    watchlists: Sequence[Sequence[str] | None], symbols: Sequence[str]
) -> dict[str, int]:
    counts = dict.fromkeys(symbols, 0)
    for watch in watchlists:
        for sym in symbols if watch is None else watch:
            counts[sym] += 1
    return counts


def expected_deliveries(published: Mapping[str, int], watchers: Mapping[str, int]) -> int:
    return sum(n * watchers.get(sym, 0) for sym, n in published.items())
