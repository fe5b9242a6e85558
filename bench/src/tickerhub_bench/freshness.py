"""Scenario S (issue 8): how fresh a client's prices are, Yahoo's push stream vs polling.

Two runs over the same stack: the real poller as a subprocess on the offline Yahoo
(``python -m tickerhub_testkit.yahoo.poller``, yfinance parsing recorded answers),
the api, Redis, and the scenario's clients on ``/ws/prices``, each watching 10 symbols.

* ``stream``: the poller streams from the fake Yahoo streamer in this process,
  which sends ``rate`` ticks/s round-robin over the symbols; polls only reconcile
  (``RECONCILE_FREQ`` = 3600 s). Measured: tick sent -> received by the clients
  (p50/p99), every delivered update counted (ticks merged while a publish is in
  flight are measured by the one that carries them).
* ``poll``: ``STREAM=off``, polls every ``POLL_FREQ`` (5 s, the default) of a Yahoo
  whose price changes continuously. Measured: staleness, the age of the values
  the clients hold, sampled every 100 ms (mean ≈ POLL_FREQ/2 plus the poll's
  own time).

The clock is the quote's ``volume``: see ``tickclock.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from tickerhub_bench.harness import make_symbols
from tickerhub_bench.stats import Histogram
from tickerhub_testkit.processes import ServiceProcess
from tickerhub_testkit.yahoo.streamer import FakeStreamer

if TYPE_CHECKING:
    from tickerhub_bench.runner import Runner
    from tickerhub_bench.scenarios import Scenario

POLL_FREQ = 5.0
TICK_EVERY = 0.01  # the sender sends what is due every 10 ms
STALENESS_CLIENTS = 20  # per worker: sampling every client would load the loop being measured
READY_LIMIT = 120.0


def start_poller(
    runner: Runner, fake: FakeStreamer, symbols: list[str], stream: bool
) -> ServiceProcess:
    env = {
        "REDIS_URL": runner.redis_url,
        "KEY_PREFIX": "",  # as the bench's api
        "SOURCE": "yfinance",
        "TICKERS": ",".join(symbols),
        "POLL_FREQ": str(POLL_FREQ),
        "RECONCILE_FREQ": "3600",
        "STREAM": "on" if stream else "off",
        "STREAM_URL": fake.url,
        "NEWS_INTERVAL": "0",
        "METRICS_PORT": "0",
        "FAKE_YAHOO_QUOTES": "live",
        "LOG_LEVEL": "WARNING",
    }
    return ServiceProcess("python", env, args=["-m", "tickerhub_testkit.yahoo.poller"]).start()


async def send_ticks(fake: FakeStreamer, symbols: list[str], rate: float, seconds: float) -> int:
    """``rate`` ticks/s round-robin over ``symbols``; each tick's day_volume = its send time."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    index = 0
    while (now := loop.time()) < start + seconds:
        due = int((now - start) * rate) - sent
        for _ in range(max(0, due)):
            symbol = symbols[index % len(symbols)]
            index += 1
            stamp = time.time_ns()
            price = 100.0 + (index % 500) / 100
            fake.tick(symbol, price, time_ms=stamp // 1_000_000, day_volume=stamp // 1000)
            sent += 1
        await asyncio.sleep(TICK_EVERY)
    return sent


async def wait_published(redis: Redis, count: int, poller: ServiceProcess) -> None:
    deadline = time.monotonic() + READY_LIMIT
    while await redis.hlen("prices") < count:
        if poller.proc is not None and poller.proc.poll() is not None:
            raise RuntimeError(f"poller exited:\n{poller.output()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"poller did not publish {count} symbols:\n{poller.output()[-2000:]}"
            )
        await asyncio.sleep(0.2)


async def run(runner: Runner, sc: Scenario) -> dict[str, Any]:
    workers = runner.workers
    assert workers is not None
    symbols = make_symbols(sc.symbols)
    redis = Redis.from_url(runner.redis_url)
    result: dict[str, Any] = {}
    try:
        async with FakeStreamer() as fake:
            for mode in ("stream", "poll"):
                result[mode] = await one_run(runner, sc, fake, redis, symbols, mode)
    finally:
        await redis.aclose()
    return result


async def one_run(
    runner: Runner, sc: Scenario, fake: FakeStreamer, redis: Redis, symbols: list[str], mode: str
) -> dict[str, Any]:
    workers = runner.workers
    assert workers is not None
    await redis.flushall()
    poller = start_poller(runner, fake, symbols, stream=mode == "stream")
    servers = []
    try:
        await wait_published(redis, len(symbols), poller)
        servers = await runner.start_servers("ours", 1)
        specs, _ = runner.client_specs(sc, servers, symbols)
        conn = await runner.connect(sc, specs)
        await workers.all("volume_clock", True)
        seconds = sc.duration if mode == "stream" else max(sc.duration, 4 * POLL_FREQ)
        if mode == "stream":
            deadline = time.monotonic() + READY_LIMIT
            while not set(symbols) <= fake.subscribed:
                if time.monotonic() > deadline:
                    raise TimeoutError("the poller never subscribed every symbol")
                await asyncio.sleep(0.1)
            await send_ticks(fake, symbols, sc.rate, 1.0)  # warm-up
        await workers.all("measure", True, 0)
        runner.progress.line(f"[S {mode}] measuring {seconds:.0f}s")
        sampling = asyncio.ensure_future(workers.all("staleness", seconds, 0.1, STALENESS_CLIENTS))
        sent = await send_ticks(fake, symbols, sc.rate, seconds) if mode == "stream" else 0
        states = await sampling
        await asyncio.sleep(1.0)  # the last ticks land
        await workers.all("measure", False)
        stats = await workers.all("stats")
        await workers.all("volume_clock", False)
        latency, staleness = Histogram(), Histogram()
        for s in stats:
            latency.merge(Histogram.from_state(s["normal"]["hist"]))
        for state in states:
            staleness.merge(Histogram.from_state(state))
        out = {
            "seconds": seconds,
            "ticks_sent": sent,
            "updates_received": latency.count,
            "latency": latency.summary(),
            "staleness": staleness.summary(),
            "connect": conn,
        }
        lat, st = out["latency"], out["staleness"]
        runner.progress.done(
            f"[S {mode}] {conn['connected']} clients: update latency p50 {lat['p50_ms']:.1f} "
            f"p99 {lat['p99_ms']:.1f} ms ({lat['count']} updates, {sent} ticks sent); "
            f"staleness mean {st['mean_ms']:.0f} ms p99 {st['p99_ms']:.0f} ms"
        )
        return out
    finally:
        await workers.all("close")
        for server in servers:
            await asyncio.to_thread(server.stop)
        await asyncio.to_thread(poller.stop)
