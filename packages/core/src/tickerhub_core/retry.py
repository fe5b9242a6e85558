"""Retry an async operation until it succeeds: backoff, one condition log, the cancel check.

The poller's Redis loops each wrote this by hand. What every copy had to get
right, now in one place:

* the delay between attempts comes from a :class:`~tickerhub_core.backoff.Backoff`
  (full jitter), reset on success;
* the outage is logged as one condition (start, periodic summary, recovery), not
  once per attempt (:class:`~tickerhub_core.logs.ConditionLog`);
* after every attempt, failed or not, :func:`~tickerhub_core.cancellation.honour_cancellation`
  raises a cancel that redis-py swallowed, so a cancelled task stops instead of
  retrying forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tickerhub_core.backoff import Backoff
from tickerhub_core.cancellation import honour_cancellation
from tickerhub_core.logs import ConditionLog

T = TypeVar("T")


async def retry_until_done(
    attempt: Callable[[], Awaitable[T]],
    *,
    errors: tuple[type[BaseException], ...],
    backoff: Backoff,
    condition: ConditionLog,
    describe: Callable[[BaseException], str],
) -> T:
    """Await ``attempt()`` until it returns; ``errors`` are retried, anything else raises."""
    while True:
        try:
            result = await attempt()
        except errors as exc:
            honour_cancellation()
            condition.failed(describe(exc))
            await asyncio.sleep(backoff.next_delay())
            continue
        honour_cancellation()  # redis-py may have swallowed a cancel and returned
        backoff.reset()
        condition.recovered()
        return result
