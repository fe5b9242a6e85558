"""Logging set-up and a logger for conditions that persist.

A Redis outage or a Yahoo rate limit can last minutes; logging every retry
would bury everything else. :class:`ConditionLog` logs when a condition starts,
a summary at most every ``every`` seconds while it lasts, and when it clears.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


class ConditionLog:
    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._every = every
        self._clock = clock
        self._since: float | None = None
        self._last_log = 0.0
        self._count = 0

    @property
    def active(self) -> bool:
        return self._since is not None

    def failed(self, detail: str) -> None:
        now = self._clock()
        self._count += 1
        if self._since is None:
            self._since = self._last_log = now
            self._logger.warning("%s: %s", self._what, detail)
        elif now - self._last_log >= self._every:
            self._last_log = now
            self._logger.warning(
                "%s: still failing after %d attempts over %.0fs (last: %s)",
                self._what,
                self._count,
                now - self._since,
                detail,
            )

    def recovered(self) -> None:
        if self._since is None:
            return
        self._logger.info(
            "%s: recovered after %d failures over %.1fs",
            self._what,
            self._count,
            self._clock() - self._since,
        )
        self._since = None
        self._count = 0
