"""How often a ticker is polled: ``POLL_FREQ``, or ``RECONCILE_FREQ`` while the stream is up.

While Yahoo's price stream is connected it carries the prices; polls are then
only a reconciliation (fields the stream lacks, symbols it never ticks), every
``RECONCILE_FREQ`` seconds. The moment the stream goes down, ticker tasks asleep
for a reconciliation interval wake up and poll within ``POLL_FREQ`` of their last
poll (at once if that is already past), rather than waiting out a 60 s sleep.

Only sleeps longer than ``POLL_FREQ`` are cut short, and only to ``POLL_FREQ``
after they began: a ticker's backoff after a failure is rarely longer (a symbol
without data waits 300 s, and then polls once early when the stream drops; a rate
limit is held by the batcher itself, whatever a ticker's sleep).

Without a stream (``reconcile_freq=None``) this is exactly the old fixed cadence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Cadence:
    def __init__(
        self,
        poll_freq: float,
        reconcile_freq: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.poll_freq = poll_freq
        self.reconcile_freq = reconcile_freq
        self.streaming = False
        self._clock = clock
        self._down = asyncio.Event()  # set (then replaced) when the stream goes down

    def interval(self) -> float:
        """Seconds from a good poll to the next one."""
        if self.streaming and self.reconcile_freq is not None:
            return self.reconcile_freq
        return self.poll_freq

    def set_streaming(self, up: bool) -> None:
        """The stream came up (polls slow down from the next one) or went down (wake sleepers)."""
        if up == self.streaming:
            return
        self.streaming = up
        if not up:
            self._down.set()
            self._down = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, cut to ``poll_freq`` if the stream goes down meanwhile."""
        if delay <= self.poll_freq or self.reconcile_freq is None:
            await asyncio.sleep(delay)
            return
        started = self._clock()
        try:
            async with asyncio.timeout(delay):
                await self._down.wait()
        except TimeoutError:
            return
        rest = started + self.poll_freq - self._clock()
        if rest > 0:
            await asyncio.sleep(rest)
