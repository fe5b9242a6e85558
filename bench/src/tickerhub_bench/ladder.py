"""The saturation search: the highest update rate a step still passes at.

Pure logic over an async ``step(rate) -> passed``; the runner supplies the step that
loads the server and judges it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

Step = Callable[[float], Awaitable[bool]]


async def find_max_rate(
    step: Step, start: float, max_rate: float, bisect: int
) -> tuple[float, float | None]:
    """``(highest passing rate, lowest failing rate)``; ``0.0`` when none passed, ``None``
    when none failed up to ``max_rate``.

    Doubles from ``start`` while steps pass (halves while they fail), then narrows the
    last passing/failing pair ``bisect`` times at its geometric mean.
    """
    rate = start
    good, bad = 0.0, math.inf
    if await step(rate):
        good = rate
        while rate * 2 <= max_rate:
            rate *= 2
            if not await step(rate):
                bad = rate
                break
            good = rate
    else:
        bad = rate
        while rate / 2 >= 1:
            rate /= 2
            if await step(rate):
                good = rate
                break
            bad = rate
    for _ in range(bisect):
        if not good or bad == math.inf:
            break
        mid = round(math.sqrt(good * bad))
        if mid in (good, bad):
            break
        if await step(mid):
            good = mid
        else:
            bad = mid
    return good, None if bad == math.inf else bad
