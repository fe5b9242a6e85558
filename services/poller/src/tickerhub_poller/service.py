"""The poller service: wires the source, the snapshot and Redis together."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tickerhub_core.backoff import Backoff
from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.interest import InterestStore
from tickerhub_core.logs import ConditionLog
from tickerhub_core.models import Quote
from tickerhub_core.retry import retry_until_done
from tickerhub_core.store import YahooRateLimit
from tickerhub_poller.bar_publisher import BarPublisher
from tickerhub_poller.bars import BarBuilder
from tickerhub_poller.batcher import QuoteBatcher
from tickerhub_poller.cadence import Cadence
from tickerhub_poller.fencing import FencedBarStore, FencedNewsStore, FencedSnapshotStore
from tickerhub_poller.healthcheck import Heartbeat
from tickerhub_poller.lease import Leadership, LeaseStore
from tickerhub_poller.live import LiveQuotes, build_stream
from tickerhub_poller.news import NewsPoller
from tickerhub_poller.publisher import Publisher
from tickerhub_poller.settings import PollerSettings
from tickerhub_poller.snapshot import Snapshot
from tickerhub_poller.source_status import SourceStatus
from tickerhub_poller.sources.base import QuoteSource
from tickerhub_poller.status_writer import StatusWriter
from tickerhub_poller.tickers import TickerTask
from tickerhub_poller.universe import OnDemandTask, Universe

log = logging.getLogger(__name__)

MIN_SHARED_HOLD = 1.0


class Poller:
    def __init__(self, settings: PollerSettings, redis: Redis, source: QuoteSource) -> None:
        self.settings = settings
        # Every write below checks the lease first (fencing.py): only the leader publishes.
        self.leadership = Leadership(
            LeaseStore(redis, settings.keys.poller_lease), settings.lease_ttl
        )
        fence = self.leadership.check
        self._store = FencedSnapshotStore(redis, settings.keys, fence)
        self.bars = BarPublisher(
            FencedBarStore(redis, settings.keys, fence),
            BarBuilder(grace=settings.bar_grace),
            settings.tickers,
        )
        self.snapshot = Snapshot(observer=self.bars.observe)
        heartbeat = Heartbeat(settings.heartbeat_file) if settings.heartbeat_file else None
        self._heartbeat = heartbeat
        self._standby_redis = ConditionLog(log, "redis (standby)")
        self.publisher = Publisher(
            self._store,
            self.snapshot,
            heartbeat=heartbeat,
            on_write_back=self._write_news_back,
        )
        self._rate_limit = YahooRateLimit(redis, settings.keys)
        self._marking: set[asyncio.Task[None]] = set()
        # The source's health for GET /status (status.py). The stream reports through
        # status.track("stream"); on-demand symbols are counted from ``self.on_demand``
        # when present (the hook metrics.py reads too).
        self.status = SourceStatus(
            source.name,
            len(settings.tickers),
            on_demand_symbols=lambda: len(getattr(self, "on_demand", ()) or ()),
            failing_symbols=lambda: self.batcher.failing_symbols,
        )
        self.status_writer = StatusWriter(redis, settings.keys.source_status, self.status)
        self.batcher = QuoteBatcher(
            source,
            settings.batch_size,
            settings.batch_window,
            on_rate_limited=self._share_rate_limit,
            health=self.status.poll,
        )
        # TICKERS plus the symbols clients ask for (universe.py); the latter counted by /metrics.
        self.universe = Universe(
            settings.tickers,
            self._on_demand_task,
            self.snapshot,
            self.publisher.notify,
            self.publisher.remove,
            InterestStore(redis, settings.keys) if settings.on_demand else None,
            settings.max_symbols,
            settings.interest_ttl,
        )
        self.on_demand = self.universe.on_demand
        # The push stream (live.py): polls slow to RECONCILE_FREQ while it is up.
        stream_on = settings.stream_enabled
        self.cadence = Cadence(settings.poll_freq, settings.reconcile_freq if stream_on else None)
        self.live = LiveQuotes(self.snapshot, self.publisher.notify)
        self.stream = (
            build_stream(
                settings,
                self.universe.symbols,
                self.live,
                self.snapshot,
                self.cadence,
                self.status.track("stream"),
            )
            if stream_on
            else None
        )
        if self.stream is not None:
            # A symbol asked for (or let go) is subscribed (or dropped) at once, not
            # at the next 15 s re-send.
            self.universe.subscribe(self.stream.resubscribe)
        # Read by metrics.py (and /status): connected, ticks, last tick, last error.
        self.stream_stats = self.stream.state if self.stream is not None else None
        self.tickers = [
            TickerTask(
                s,
                self.batcher,
                self.snapshot,
                self.publisher.notify,
                settings.poll_freq,
                settings.stale_after,
                self.cadence,
            )
            for s in settings.tickers
        ]
        self.news = NewsPoller(
            source,
            FencedNewsStore(redis, settings.keys, fence),
            settings.tickers,
            settings.news_interval,
            settings.news_per_ticker,
            settings.news_max_items,
            health=self.status.poll,
            on_demand=lambda: sorted(self.universe.on_demand),
            max_symbols=settings.news_max_symbols,
        )
        self._source = source

    def _on_demand_task(self, symbol: str) -> TickerTask:
        settings = self.settings
        return OnDemandTask(
            symbol,
            self.batcher,
            self.snapshot,
            self.publisher.notify,
            settings.poll_freq,
            settings.stale_after,
            self.cadence,
        )

    async def _write_news_back(self) -> None:
        await self.news.write_back()

    def _share_rate_limit(self, pause: float) -> None:
        """Tell the api (its history route asks Yahoo from the same address) to hold off
        too: the Redis key ``yahoo:rate-limited`` for the pause, at least a second."""
        task = asyncio.create_task(self._mark_rate_limited(max(pause, MIN_SHARED_HOLD)))
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)

    async def _mark_rate_limited(self, seconds: float) -> None:
        try:
            await self._rate_limit.mark(seconds)
        except (RedisError, OSError) as exc:  # Redis down: the publisher reports that
            log.debug("could not share the rate limit through Redis: %s", exc)

    async def run(self) -> None:
        """Run until cancelled: on standby while another poller holds the lease (see
        lease.py), polling and publishing while this one does."""
        await self.publisher.load()
        await self.leadership.run(self._lead, self._standby)

    async def _standby(self) -> None:
        """Follow Redis's snapshot (reloaded every ``LEASE_TTL``) without calling the
        source, and stay healthy (the heartbeat file) while Redis answers."""
        # Quotes taken in an earlier term and never published are older than what the
        # leader has written since: publishing them later would move prices back.
        self.snapshot.pending.clear()
        while True:
            try:
                seq, quotes = await self._store.load()
            except (RedisError, OSError) as exc:
                honour_cancellation()
                self._standby_redis.failed(f"cannot load the snapshot ({exc})")
            else:
                honour_cancellation()
                self._standby_redis.recovered()
                self._adopt(seq, quotes)
                if self._heartbeat is not None:
                    self._heartbeat()
            await asyncio.sleep(self.settings.lease_ttl)

    def _adopt(self, seq: int, quotes: dict[str, Quote]) -> None:
        """Follow Redis, unless it is behind us: then it lost its data (a restart without
        persistence), and the publisher writes ours back with a higher seq (a ``reset``)
        as soon as this poller leads, as a lone poller always did."""
        if seq >= self.snapshot.seq:
            self.snapshot.load(seq, quotes)

    async def _lead(self) -> None:
        """Poll and publish until cancelled (shutdown, or the lease lost)."""
        # Redis's snapshot as the last leader left it: the first diffs are relative to it.
        self.snapshot.pending.clear()
        seq, quotes = await retry_until_done(
            self._store.load,
            errors=(RedisError, OSError),
            backoff=Backoff(base=0.2, cap=2.0),
            condition=self._standby_redis,
            describe=lambda exc: f"cannot load the snapshot ({exc})",
        )
        self._adopt(seq, quotes)
        self.bars.discard_unsent()
        await self.bars.load()
        log.info(
            "polling %d tickers from %s every %ss",
            len(self.tickers),
            self._source.name,
            self.settings.poll_freq,
        )
        if self.stream is not None:
            log.info(
                "streaming from %s; polls every %ss while the stream is up",
                self.stream.url,
                self.settings.reconcile_freq,
            )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.publisher.run(), name="publisher")
                tasks.create_task(self.bars.run(), name="bars")
                tasks.create_task(self.universe.run(), name="universe")
                tasks.create_task(self.status_writer.run(), name="status")
                for ticker in self.tickers:
                    tasks.create_task(ticker.run(), name=f"ticker:{ticker.symbol}")
                if self.stream is not None:
                    tasks.create_task(self.stream.run(), name="stream")
                if self.settings.news_interval > 0:
                    tasks.create_task(self.news.run(), name="news")
        finally:
            await self.batcher.aclose()
            if self.leadership.held():  # shutting down, not deposed: publish what is pending
                # Last chance to write what is pending, bounded so shutdown stays quick.
                try:
                    async with asyncio.timeout(2):
                        await self.publisher.flush()
                    await self.bars.flush(everything=True)
                except Exception as exc:  # shutting down: report, do not raise
                    log.warning("could not publish pending changes on shutdown: %s", exc)
