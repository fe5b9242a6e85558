"""Waiting in tests: poll a condition until it holds, or fail saying what never happened.

The time limits only keep a broken build from hanging; nothing here asserts a speed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

WAIT = 30.0  # generous: a loaded CI machine is slow, a hang is what we guard against


class _Deadline:
    def __init__(self, what: str, timeout: float, detail: Callable[[], str] | None) -> None:
        self.what = what
        self.timeout = timeout
        self.detail = detail
        self.end = time.monotonic() + timeout

    def check(self, last: object) -> None:
        if time.monotonic() < self.end:
            return
        message = f"timed out after {self.timeout:g}s waiting for {self.what} (last: {last!r})"
        if self.detail is not None:
            message += f"\n{self.detail()}"
        raise AssertionError(message)


# Two signatures so an async ``check`` gives T, not the awaitable, to the caller.
@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    what: str,
    *,
    limit: float = ...,
    interval: float = ...,
    detail: Callable[[], str] | None = ...,
) -> T: ...
@overload
async def eventually(
    check: Callable[[], T],
    what: str,
    *,
    limit: float = ...,
    interval: float = ...,
    detail: Callable[[], str] | None = ...,
) -> T: ...
async def eventually(
    check: Callable[[], Any],
    what: str,
    *,
    limit: float = WAIT,
    interval: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> Any:
    """Call ``check`` (plain or async) until it returns something truthy; return that.

    Gives up after ``limit`` seconds.

    ``what`` names the awaited event in the failure; ``detail`` adds context to it
    (a process log, say).
    """
    deadline = _Deadline(what, limit, detail)
    while True:
        result: Any = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        deadline.check(result)
        await asyncio.sleep(interval)


def eventually_blocking(
    check: Callable[[], T],
    what: str,
    *,
    limit: float = WAIT,
    interval: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> T:
    """``eventually`` for synchronous tests: blocks the thread between checks."""
    deadline = _Deadline(what, limit, detail)
    while True:
        result = check()
        if result:
            return result
        deadline.check(result)
        time.sleep(interval)
