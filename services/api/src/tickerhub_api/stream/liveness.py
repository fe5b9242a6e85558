"""Is any producer alive? If not, every quote is served ``stale``, as data.

The leading poller sets ``prices:heartbeat`` (30 s TTL) at least every 5 s. When
the key has expired and no diff came since the last look, no producer is alive:
the prices we hold are frozen. Then the mirror marks every quote ``stale: true``
(:meth:`~tickerhub_api.stream.mirror.Mirror.mark_stale`: REST, snapshots and
resume answers serve it from then on) and the connected clients get it as a
``diff`` at the current seq (no producer made a new seq). When a producer is back,
its first diff carries ``stale: false`` for those quotes (``Mirror.apply``); if it
is back without a change to publish (a quiet market), the heartbeat says so and the
clients get a diff with ``stale: false`` at the current seq.

Looked at once a second (one ``GET`` per api process), off the diff path: while a
producer is alive the fan-out pays one attribute test per diff, nothing more.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from tickerhub_api.stream.mirror import Mirror
from tickerhub_api.stream.prices import PriceStream
from tickerhub_core import wire
from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.store import SnapshotStore

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


class Liveness:
    def __init__(
        self,
        mirror: Mirror,
        prices: PriceStream,
        snapshots: SnapshotStore,
        interval: float = CHECK_SECONDS,
    ) -> None:
        self._mirror = mirror
        self._prices = prices
        self._snapshots = snapshots
        self._interval = interval
        self._last_seq: int | None = None
        # None until the first look; False while every quote is served stale.
        self.producer_alive: bool | None = None

    @property
    def quotes_stale(self) -> bool:
        """Every quote is being served ``stale`` for want of a producer."""
        return self._mirror.forced_stale is not None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                beat = await self._snapshots.last_beat()
            except (RedisError, OSError):
                # Redis itself is the problem: the subscription and /readyz say so; the
                # producer may be fine, so change nothing.
                honour_cancellation()
                continue
            honour_cancellation()
            self.observe(beating=beat is not None)

    def observe(self, *, beating: bool) -> None:
        """One look: the heartbeat key present or not (and the mirror's seq moved or not)."""
        mirror = self._mirror
        seq = mirror.seq
        moved = self._last_seq is not None and seq != self._last_seq
        self._last_seq = seq
        if beating or moved:
            # A diff since the last look proves a producer too (its first publish may
            # come a round trip before its first heartbeat).
            self._send(mirror.unmark_stale())
            if self.producer_alive is False:
                log.info("a producer is alive again: quotes are fresh again")
            self.producer_alive = True
            return
        if not mirror.loaded:
            return
        self._send(mirror.mark_stale())
        if self.producer_alive is not False:
            log.warning(
                "no producer is alive (its heartbeat expired, no diff since): serving "
                "all %d quotes as stale until one is back",
                len(mirror),
            )
        self.producer_alive = False

    def _send(self, data: dict[str, dict[str, object]]) -> None:
        if data:
            self._prices.publish_diff(self._mirror.seq, wire.now_ms(), data)
