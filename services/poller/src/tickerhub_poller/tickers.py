"""One task per ticker: poll, keep the latest quote pending, mark stale after misses."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tickerhub_core.models import Quote
from tickerhub_poller.batcher import BatchFailedError, QuoteBatcher
from tickerhub_poller.cadence import Cadence
from tickerhub_poller.live import reconcile_poll
from tickerhub_poller.snapshot import Snapshot
from tickerhub_poller.sources.base import NoDataError, SourceError

log = logging.getLogger(__name__)

# A symbol Yahoo has no price for (delisted, mistyped) is retried this rarely.
NO_DATA_RETRY = 300.0


class TickerTask:
    def __init__(
        self,
        symbol: str,
        batcher: QuoteBatcher,
        snapshot: Snapshot,
        notify: Callable[[], None],
        poll_freq: float,
        stale_after: int,
        cadence: Cadence | None = None,
    ) -> None:
        self.symbol = symbol
        self._batcher = batcher
        self._snapshot = snapshot
        self._notify = notify
        self._poll_freq = poll_freq
        self._stale_after = stale_after
        # Shared by every ticker: RECONCILE_FREQ while the stream is up (cadence.py).
        self._cadence = cadence or Cadence(poll_freq)
        self.misses = 0
        self._announced_stale = False  # its "marked stale" line was logged
        # time.monotonic() of the last good quote (start counts: a symbol never
        # fetched ages from when the poller began), for /metrics' oldest quote age.
        self.fresh_at = time.monotonic()

    @property
    def stale(self) -> bool:
        return self.misses >= self._stale_after

    async def run(self) -> None:
        while True:
            delay = await self.poll_once()
            await self._cadence.sleep(delay)

    async def poll_once(self) -> float:
        """Poll once; return how long to wait before the next poll."""
        try:
            quote = await self._batcher.get(self.symbol)
        except SourceError as exc:
            return self._missed(exc)
        if self.misses >= self._stale_after and self._announced_stale:
            log.info("%s: fresh again after %d missed cycles", self.symbol, self.misses)
        self.misses = 0
        self._announced_stale = False
        self.fresh_at = time.monotonic()
        polled: Quote = {**quote, "symbol": self.symbol, "stale": False}
        # A reconciliation poll older than the stream's last tick keeps the tick's prices.
        self._snapshot.update(reconcile_poll(self._snapshot.get(self.symbol), polled))
        self._notify()
        return self._cadence.interval()

    def _missed(self, exc: SourceError) -> float:
        self.misses += 1
        if self.misses == self._stale_after:
            last: Quote | None = self._snapshot.get(self.symbol)
            if last is not None and not last.get("stale"):
                # While the whole source is down its one line says why: not one per symbol.
                if not self._batcher.source_down:
                    self._announced_stale = True
                    log.warning(
                        "%s: marked stale after %d missed cycles (%s)",
                        self.symbol,
                        self.misses,
                        exc,
                    )
                self._snapshot.update({**last, "stale": True})
                self._notify()
        if isinstance(exc, NoDataError):
            if self.misses == 1:
                log.warning(
                    "%s: no data from the source (%s); retrying every %.0fs",
                    self.symbol,
                    exc,
                    NO_DATA_RETRY,
                )
            if self.misses < self._stale_after:
                return self._poll_freq
            return max(self._poll_freq, NO_DATA_RETRY)
        if isinstance(exc, BatchFailedError):
            return max(self._poll_freq, exc.retry_after)
        return self._poll_freq
