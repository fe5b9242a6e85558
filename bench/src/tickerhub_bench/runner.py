"""Orchestration: for each scenario and target, start servers, connect clients, inject,
measure, check, and collect the results.

The pieces it drives live beside it: ``scenarios`` (the table), ``options`` (what was
asked), ``workers`` (client processes), ``progress`` (the stderr line), ``ladder`` (the
saturation search), ``machine`` (the host description).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from dataclasses import asdict
from typing import Any

import orjson
from redis.asyncio import Redis

from tickerhub_bench import freshness, profile, storm
from tickerhub_bench.client import CTR_CONNECTED, CTR_UPDATES
from tickerhub_bench.harness import (
    Injector,
    ServerProc,
    Usage,
    expected_deliveries,
    get_json,
    make_symbols,
    watchers_of,
)
from tickerhub_bench.ladder import find_max_rate
from tickerhub_bench.machine import machine
from tickerhub_bench.options import Options
from tickerhub_bench.progress import Progress
from tickerhub_bench.scenarios import P99_SATURATION_MS, Scenario, scenarios
from tickerhub_bench.stats import Histogram
from tickerhub_bench.view import normalize_tickers
from tickerhub_bench.workers import Workers
from tickerhub_core.keys import RedisKeys
from tickerhub_testkit.net import free_port
from tickerhub_testkit.redis_server import RedisServer


class Runner:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.progress = Progress(opts.quiet)
        self.workers: Workers | None = None
        self.redis_server: RedisServer | None = None
        self.redis_url = opts.redis_url or ""
        self.profiles: dict[str, Any] = {}
        self.watchers: dict[str, int] = {}

    # -- top level ------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.workers = Workers(self.opts.workers)  # fork before any loop or thread exists
        try:
            if not self.redis_url:
                self.redis_server = RedisServer().start()
                self.redis_url = self.redis_server.url
            try:
                import uvloop

                runner = uvloop.run
            except ImportError:  # pragma: no cover
                runner = asyncio.run
            return runner(self._run())
        finally:
            self.workers.close()
            if self.redis_server is not None:
                self.redis_server.close()

    async def _run(self) -> dict[str, Any]:
        results: dict[str, Any] = {"scenarios": {}, "machine": machine(), "options": {
            "full": self.opts.full, "workers": self.opts.workers, "targets": self.opts.targets,
        }}  # fmt: skip
        for sc in scenarios(self.opts.full, self.opts.only):
            if self.opts.clients:
                sc.clients = self.opts.clients
            entry: dict[str, Any] = {"scenario": asdict(sc)}
            for target in self.opts.targets:
                if sc.name in "EFRMS" and target != "ours":
                    continue  # scale-out, REST flood, resume and max_rate: our api vs itself
                try:
                    if sc.storm:
                        entry[target] = await storm.run(self, sc)
                    elif sc.freshness:
                        entry[target] = await freshness.run(self, sc)
                    elif sc.saturation:
                        entry[target] = await self.saturation(sc, target)
                    elif sc.rest_flood:
                        entry[target] = await self.rest_flood(sc, target)
                    else:
                        entry[target] = await self.scenario(sc, target)
                except Exception as exc:
                    entry[target] = {"error": f"{type(exc).__name__}: {exc}"}
                    self.progress.done(f"{sc.name} {target}: FAILED {exc}")
            results["scenarios"][sc.name] = entry
        if "E" in results["scenarios"] and "D" in results["scenarios"]:
            results["scenarios"]["E"]["single"] = results["scenarios"]["D"].get("ours")
        results["profiles"] = self.profiles
        return results

    # -- pieces ---------------------------------------------------------------------
    async def start_servers(self, target: str, count: int) -> list[ServerProc]:
        external = self.opts.api_url if target == "ours" else self.opts.baseline_url
        if external:
            port = int(external.rsplit(":", 1)[1].split("/")[0])
            server = ServerProc("api" if target == "ours" else "baseline", port)
            server.pid = self.opts.api_pid if target == "ours" else None
            return [server]
        kind = "baseline" if target == "baseline" else "api"
        # "nometrics": our api with METRICS=false, to measure what /metrics costs.
        env = {"METRICS": "false"} if target == "nometrics" else {}
        servers = []
        for _ in range(count):
            server = ServerProc(kind, free_port())
            await asyncio.to_thread(
                server.start, self.redis_url, self.opts.logdir, self.opts.api_cmd, env
            )
            servers.append(server)
        return servers

    def client_specs(
        self, sc: Scenario, servers: list[ServerProc], symbols: list[str]
    ) -> tuple[list[list[tuple[str, list[str] | None, bool]]], list[list[str] | None]]:
        rng = random.Random(42)
        per_worker: list[list[tuple[str, list[str] | None, bool]]] = [
            [] for _ in range(self.opts.workers)
        ]
        watchlists: list[list[str] | None] = []
        stall_every = round(1 / sc.stall_fraction) if sc.stall_fraction else 0
        for i in range(sc.clients):
            watch = sorted(rng.sample(symbols, sc.watch)) if sc.watch else None
            stalled = bool(stall_every) and i % stall_every == 0
            url = servers[i % len(servers)].ws_url
            if sc.client_rate is not None:
                url += f"?max_rate={sc.client_rate:g}"
            per_worker[i % self.opts.workers].append((url, watch, stalled))
            watchlists.append(watch)
        return per_worker, watchlists

    async def connect(self, sc: Scenario, specs: list[list[Any]]) -> dict[str, Any]:
        assert self.workers is not None
        conc = max(1, self.opts.connect_concurrency // self.opts.workers)
        t0 = time.monotonic()
        task = asyncio.ensure_future(self.workers.each("connect", [(s, conc, 60.0) for s in specs]))
        while not task.done():
            self.progress.line(
                f"[{sc.name}] connecting {self.workers.counter(CTR_CONNECTED)}/{sc.clients}"
            )
            await asyncio.sleep(0.25)
        replies = await task
        errors = [e for r in replies for e in r["errors"]]
        return {
            "seconds": time.monotonic() - t0,
            "connected": sum(r["connected"] for r in replies) - len(errors),
            "errors": len(errors),
            "error_sample": errors[:3],
        }

    async def load(
        self,
        sc: Scenario,
        target: str,
        injector: Injector,
        rate: float,
        seconds: float,
        usage: Usage,
        stall: bool = False,
        warmup: float = 1.0,
        profile_pid: int | None = None,
    ) -> dict[str, Any]:
        """Warm up, then measure ``seconds`` of load at ``rate``, then wait for convergence."""
        assert self.workers is not None
        workers = self.workers
        await injector.run(rate, warmup)
        await workers.all("measure", True, injector.seq)
        published0 = injector.published
        per_symbol0 = dict(injector.per_symbol)
        updates0 = workers.counter(CTR_UPDATES)
        loadgen = Usage([os.getpid(), *workers.pids], children=False)
        cpu0, gen0, t0 = usage.cpu(), loadgen.cpu(), time.monotonic()
        gen_each0 = [Usage([pid], children=False).cpu() for pid in workers.pids]
        inject = asyncio.ensure_future(injector.run(rate, seconds))
        stalled_at = None
        prof_task = None
        if profile_pid and self.opts.profile_seconds > 0:
            prof_task = asyncio.ensure_future(
                asyncio.to_thread(
                    profile.record,
                    profile_pid,
                    min(self.opts.profile_seconds, seconds),
                    self.opts.logdir / f"profile-{sc.name}-{target}.txt",
                )
            )
        while not inject.done():
            elapsed = time.monotonic() - t0
            if stall and stalled_at is None and elapsed >= sc.stall_at:
                stalled_at = elapsed
                await workers.all("stall", sc.stall_seconds)
            usage.sample()
            delivered = workers.counter(CTR_UPDATES) - updates0
            self.progress.line(
                f"[{sc.name} {target}] {elapsed:5.1f}/{seconds:.0f}s rate {rate:.0f}/s "
                f"published {injector.published - published0} delivered {delivered} "
                f"rss {usage.rss() / 2**20:.0f} MiB"
                + (" (stalling)" if stalled_at is not None else "")
            )
            await asyncio.sleep(0.25)
        await inject
        t1 = time.monotonic()
        cpu1, gen1 = usage.cpu(), loadgen.cpu()
        gen_each1 = [Usage([pid], children=False).cpu() for pid in workers.pids]
        final = injector.final_seqs()
        conv = await workers.all("converge", final, 30.0 if stall else 15.0)
        t2 = time.monotonic()
        usage.sample()
        await workers.all("measure", False)
        stats = await workers.all("stats")
        normal, stalled = Histogram(), Histogram()
        updates = frames = 0
        for s in stats:
            normal.merge(Histogram.from_state(s["normal"]["hist"]))
            stalled.merge(Histogram.from_state(s["stalled"]["hist"]))
            updates += s["normal"]["updates"] + s["stalled"]["updates"]
            frames += s["normal"]["frames"] + s["stalled"]["frames"]
        published = {k: v - per_symbol0.get(k, 0) for k, v in injector.per_symbol.items()}
        if prof_task is not None:
            self.profiles[f"{sc.name}-{target}"] = await prof_task
        wall = t1 - t0
        both = Histogram().merge(normal).merge(stalled)
        return {
            "rate": rate,
            "published": injector.published - published0,
            "delivered": updates,
            "frames": frames,
            "expected": expected_deliveries(published, self.watchers),
            "delivered_per_s": updates / (t2 - t0),
            "latency": both.summary(),
            "latency_normal": normal.summary(),
            "latency_stalled": stalled.summary() if stalled.count else None,
            "converge_s": t2 - t1,
            "not_converged": sum(c["pending"] for c in conv),
            "api_cpu_pct": 100 * (cpu1 - cpu0) / wall,
            "loadgen_cpu_pct": 100 * (gen1 - gen0) / wall,
            "loadgen_worker_max_pct": max(
                (100 * (b - a) / wall for a, b in zip(gen_each0, gen_each1, strict=True)),
                default=0.0,
            ),
            "injector_late_ticks": injector.late_ticks,
        }

    async def check(self, servers: list[ServerProc], redis: Redis) -> dict[str, Any]:
        """Compare every client's view with GET /tickers (Redis when that fails)."""
        assert self.workers is not None
        source = "GET /tickers"
        try:
            expected = normalize_tickers(
                await asyncio.to_thread(get_json, f"{servers[0].url}/tickers")
            )
        except Exception as exc:
            source = f"redis (GET /tickers failed: {exc})"
            raw = await redis.hgetall("prices")
            expected = {k.decode(): orjson.loads(v) for k, v in raw.items()}
        replies = await self.workers.all("check", expected)
        dropped: dict[str, int] = {}
        for r in replies:
            for code, n in r["dropped"].items():
                dropped[code] = dropped.get(code, 0) + n
        return {
            "source": source,
            "mismatched_clients": sum(r["wrong_clients"]["normal"] for r in replies),
            "mismatched_stalled_clients": sum(r["wrong_clients"]["stalled"] for r in replies),
            "mismatched_symbols": sum(r["wrong_symbols"] for r in replies),
            "dropped": dropped,
            "sample": [s for r in replies for s in r["sample"]][:3],
            "extra_updates": sum(r["extra"] for r in replies),
            "stale_updates_skipped": sum(r["skipped"] for r in replies),
        }

    async def setup(
        self, sc: Scenario, target: str
    ) -> tuple[Redis, Injector, list[ServerProc], Usage, dict[str, Any]]:
        assert self.workers is not None
        redis = Redis.from_url(self.redis_url)
        symbols = make_symbols(sc.symbols)
        injector = Injector(redis, RedisKeys(""), symbols, self.workers.pub)
        await injector.seed()
        servers = await self.start_servers(target, sc.processes)
        usage = Usage([s.pid for s in servers if s.pid])
        await asyncio.sleep(0.5)
        rss0 = usage.sample()
        specs, watchlists = self.client_specs(sc, servers, symbols)
        self.watchers = watchers_of(watchlists, symbols)
        conn = await self.connect(sc, specs)
        await asyncio.sleep(0.5)
        rss1 = usage.sample()
        conn["rss_idle_mib"] = rss0 / 2**20
        conn["rss_connected_mib"] = rss1 / 2**20
        conn["rss_per_conn_kib"] = (rss1 - rss0) / 1024 / max(1, conn["connected"])
        self.progress.done(
            f"[{sc.name} {target}] {conn['connected']}/{sc.clients} clients in "
            f"{conn['seconds']:.1f}s, {conn['rss_per_conn_kib']:.1f} KiB/conn"
            + (f", {conn['errors']} errors: {conn['error_sample']}" if conn["errors"] else "")
        )
        return redis, injector, servers, usage, conn

    async def teardown(self, redis: Redis, servers: list[ServerProc]) -> None:
        assert self.workers is not None
        await self.workers.all("close")
        for s in servers:
            await asyncio.to_thread(s.stop)
        await redis.aclose()

    async def scenario(self, sc: Scenario, target: str) -> dict[str, Any]:
        redis, injector, servers, usage, conn = await self.setup(sc, target)
        try:
            prof_pid = servers[0].pid if sc.name in ("A", "B") and target == "ours" else None
            result = await self.load(
                sc,
                target,
                injector,
                sc.rate,
                sc.duration,
                usage,
                stall=sc.stall_fraction > 0,
                profile_pid=prof_pid,
            )
            result["connect"] = conn
            if sc.client_rate is not None:
                paced = await self.workers.all("paced")  # type: ignore[union-attr]
                clients = sum(p["clients"] for p in paced) or 1
                # Per client: (diff frames - 1) / (time from its first to its last one).
                result["diff_frames_per_client_s"] = sum(p["total"] for p in paced) / clients
                result["max_diff_frames_per_client_s"] = max(p["max"] for p in paced)
            result["check"] = await self.check(servers, redis)
            result["peak_rss_mib"] = usage.peak_rss / 2**20
            lat = result["latency_normal"]
            self.progress.done(
                f"[{sc.name} {target}] p50 {lat['p50_ms']:.1f} ms p99 {lat['p99_ms']:.1f} ms "
                f"delivered {result['delivered']}/{result['expected']} "
                f"mismatches {result['check']['mismatched_clients']} "
                f"api cpu {result['api_cpu_pct']:.0f}% loadgen cpu {result['loadgen_cpu_pct']:.0f}%"
            )
            return result
        finally:
            await self.teardown(redis, servers)

    async def rest_flood(self, sc: Scenario, target: str) -> dict[str, Any]:
        """Scenario F: the same load measured without, then with, a /tickers flood."""
        redis, injector, servers, usage, conn = await self.setup(sc, target)
        try:
            quiet = await self.load(sc, target, injector, sc.rate, sc.duration, usage)
            flood = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tickerhub_bench.flood", f"{servers[0].url}/tickers",
                str(sc.rest_flood), str(sc.duration + 3.0),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await asyncio.sleep(1.0)  # the flood is under way before measuring
            result = await self.load(sc, target, injector, sc.rate, sc.duration, usage, warmup=0)
            out, _ = await flood.communicate()
            result["rest"] = orjson.loads(out)
            result["rest"]["per_s"] = result["rest"]["requests"] / (sc.duration + 3.0)
            result["without_flood"] = {
                "latency_normal": quiet["latency_normal"],
                "api_cpu_pct": quiet["api_cpu_pct"],
            }
            result["connect"] = conn
            result["check"] = await self.check(servers, redis)
            result["peak_rss_mib"] = usage.peak_rss / 2**20
            q, f = quiet["latency_normal"], result["latency_normal"]
            self.progress.done(
                f"[{sc.name} {target}] stream p99 {q['p99_ms']:.1f} ms quiet, "
                f"{f['p99_ms']:.1f} ms beside {result['rest']['per_s']:.0f} GET /tickers/s "
                f"(p50 {q['p50_ms']:.1f} -> {f['p50_ms']:.1f} ms)"
            )
            return result
        finally:
            await self.teardown(redis, servers)

    async def saturation(self, sc: Scenario, target: str) -> dict[str, Any]:
        redis, injector, servers, usage, conn = await self.setup(sc, target)
        steps: list[dict[str, Any]] = []

        async def step(rate: float) -> bool:
            # A failing step is retried once: one scheduling hiccup on a shared
            # 2-core machine must not end the ladder.
            for attempt in range(2):
                r = await self.load(sc, target, injector, rate, sc.duration, usage, warmup=0.5)
                ok = (
                    r["latency"]["p99_ms"] <= P99_SATURATION_MS
                    and r["not_converged"] == 0
                    and r["converge_s"] < 2.0
                )
                r["ok"] = ok
                r["attempt"] = attempt + 1
                steps.append(r)
                self.progress.done(
                    f"[{sc.name} {target}] {rate:.0f} upd/s: p99 {r['latency']['p99_ms']:.1f} ms, "
                    f"{r['delivered_per_s']:.0f} delivered/s, api cpu {r['api_cpu_pct']:.0f}% "
                    f"-> {'ok' if ok else 'over'}"
                )
                if ok:
                    return True
            return False

        try:
            start = sc.start_rate if target == "ours" else sc.start_rate / 10
            good, bad = await find_max_rate(step, start, sc.max_rate, sc.bisect)
            best = max((s for s in steps if s["ok"]), key=lambda s: s["rate"], default=None)
            return {
                "max_rate": good,
                "first_failing_rate": bad,
                "best": best,
                "steps": steps,
                "connect": conn,
                "peak_rss_mib": usage.peak_rss / 2**20,
            }
        finally:
            await self.teardown(redis, servers)
