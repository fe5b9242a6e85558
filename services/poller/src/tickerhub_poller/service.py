"""The poller service: wires the source, the snapshot and Redis together."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tickerhub_core.backoff import Backoff
from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.logs import ConditionLog
from tickerhub_core.models import Quote
from tickerhub_core.retry import retry_until_done
from tickerhub_core.store import YahooRateLimit
from tickerhub_poller.bar_publisher import BarPublisher
from tickerhub_poller.bars import BarBuilder
from tickerhub_poller.batcher import QuoteBatcher
from tickerhub_poller.fencing import FencedBarStore, FencedNewsStore, FencedSnapshotStore
from tickerhub_poller.healthcheck import Heartbeat
from tickerhub_poller.lease import Leadership, LeaseStore
from tickerhub_poller.news import NewsPoller
from tickerhub_poller.publisher import Publisher
from tickerhub_poller.settings import PollerSettings
from tickerhub_poller.snapshot import Snapshot
from tickerhub_poller.sources.base import QuoteSource
from tickerhub_poller.tickers import TickerTask

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
        self.batcher = QuoteBatcher(
            source,
            settings.batch_size,
            settings.batch_window,
            on_rate_limited=self._share_rate_limit,
        )
        self.tickers = [
            TickerTask(
                s,
                self.batcher,
                self.snapshot,
                self.publisher.notify,
                settings.poll_freq,
                settings.stale_after,
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
        )
        self._source = source

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
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.publisher.run(), name="publisher")
                tasks.create_task(self.bars.run(), name="bars")
                for ticker in self.tickers:
                    tasks.create_task(ticker.run(), name=f"ticker:{ticker.symbol}")
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
