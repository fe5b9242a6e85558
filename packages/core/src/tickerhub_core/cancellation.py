"""Honour a cancellation that a library swallowed.

redis-py (8.1 here) can let a command return normally, or fail with a connection
error, while a cancel of the calling task is pending: the ``CancelledError`` never
reaches us. ``task.cancelling()`` still counts the request, so check it after
every Redis call that a loop would otherwise follow with more work.

Ignoring it is worse than a late stop: a loop that waits under ``asyncio.timeout``
afterwards sees every later expiry as its own timeout (the timeout compares
against the cancel count it saw on entry), so the task never ends and a
``TaskGroup`` waiting for it hangs shutdown (seen in tests/faults: the poller's publisher
kept running after ``Poller.run`` was cancelled, 1 in ~10 cancels under load).
"""

from __future__ import annotations

import asyncio


def honour_cancellation() -> None:
    """Raise ``CancelledError`` if the current task has a cancel request pending."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
