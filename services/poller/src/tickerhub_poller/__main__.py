"""``poller`` console script: run until SIGINT/SIGTERM, then exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from tickerhub_core.gcpolicy import settle_heap
from tickerhub_core.logs import configure_logging
from tickerhub_core.primary_watch import follow_primary
from tickerhub_core.redis_client import redis_client
from tickerhub_core.settings import load_settings
from tickerhub_poller.service import Poller
from tickerhub_poller.settings import PollerSettings
from tickerhub_poller.sources.base import QuoteSource

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 5.0
# Every poller command is short (a Lua publish, a GET): one that takes longer
# than this is a hung connection, and the retry loop takes over.
REDIS_COMMAND_TIMEOUT = 10.0


def build_source(settings: PollerSettings) -> QuoteSource:
    if settings.source == "simulated":
        from tickerhub_poller.sources.simulated import SimulatedSource

        return SimulatedSource(
            settings.sim_seed, settings.sim_volatility, unknown=settings.sim_unknown_symbols
        )
    from tickerhub_poller.sources.yfinance import YFinanceSource

    return YFinanceSource(max_batch=settings.batch_size, timeout=settings.request_timeout)


async def start_metrics(settings: PollerSettings, poller: Poller) -> asyncio.Server | None:
    """``GET /metrics`` on ``METRICS_PORT`` (0: none). A port already taken is logged, not
    fatal: publishing quotes matters more than being scraped (Prometheus' ``up`` shows it)."""
    if not settings.metrics_port:
        return None
    from tickerhub_core.metrics import serve_metrics
    from tickerhub_poller.metrics import poller_registry

    try:
        return await serve_metrics(poller_registry(poller), "0.0.0.0", settings.metrics_port)
    except OSError as exc:
        log.error("cannot serve metrics on port %d (METRICS_PORT): %s", settings.metrics_port, exc)
        return None


async def serve(settings: PollerSettings, source: QuoteSource | None = None) -> None:
    """Run the poller until SIGINT/SIGTERM. ``source``: instead of the one ``SOURCE`` names
    (the offline-Yahoo launcher in tickerhub_testkit passes yfinance on recorded answers)."""
    redis = redis_client(settings, socket_timeout=REDIS_COMMAND_TIMEOUT)
    source = source if source is not None else build_source(settings)
    poller = Poller(settings, redis, source)
    # Everything imported so far (yfinance, pandas: about a million objects) lives as
    # long as the process: out of the collector's sight, a full collection no longer
    # walks it. Without this, one every few seconds stalled 1,000 ticks/s for 200 ms.
    settle_heap()
    metrics = await start_metrics(settings, poller)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = asyncio.create_task(poller.run(), name="poller")
    stopping = asyncio.create_task(stop.wait(), name="signal")
    # With REDIS_SENTINELS: move idle connections to a new primary even if none breaks.
    following = asyncio.create_task(follow_primary(redis), name="follow-primary")
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()  # a crash: let it propagate
        log.info("shutting down")
        running.cancel()
        _, pending = await asyncio.wait({running}, timeout=SHUTDOWN_TIMEOUT)
        if pending:
            log.error("tasks still running after %ss; exiting anyway:", SHUTDOWN_TIMEOUT)
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.print_stack(file=sys.stderr)
    finally:
        stopping.cancel()
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        if metrics is not None:
            metrics.close()
        await source.aclose()
        await redis.aclose()


def main() -> None:
    settings = load_settings(PollerSettings, "poller")
    configure_logging(settings.log_level, settings.log_format)
    # Plain asyncio: the poller spends its time waiting on Yahoo, so uvloop buys
    # nothing here. (A shutdown hang first blamed on uvloop was redis-py swallowing
    # a cancel; see cancellation.py.)
    asyncio.run(serve(settings))
    sys.exit(0)


if __name__ == "__main__":
    main()
