"""The saturation search, against a server whose capacity the test knows."""

from __future__ import annotations

import pytest

from tickerhub_bench.ladder import find_max_rate


def capacity(limit: float, tried: list[float]):
    async def step(rate: float) -> bool:
        tried.append(rate)
        return rate <= limit

    return step


async def test_doubles_up_to_the_first_failure_then_bisects() -> None:
    tried: list[float] = []
    good, bad = await find_max_rate(capacity(1000, tried), 100, 20000, bisect=2)
    assert tried[:5] == [100, 200, 400, 800, 1600]
    # sqrt(800*1600) = 1131 fails, then sqrt(800*1131) = 951 passes.
    assert tried[5:] == [1131, 951]
    assert (good, bad) == (951, 1131)


async def test_halves_down_when_the_start_rate_already_fails() -> None:
    tried: list[float] = []
    good, bad = await find_max_rate(capacity(30, tried), 100, 20000, bisect=0)
    assert tried == [100, 50, 25]
    assert (good, bad) == (25, 50)


async def test_never_failing_stops_at_max_rate_with_no_failing_rate() -> None:
    tried: list[float] = []
    good, bad = await find_max_rate(capacity(float("inf"), tried), 100, 1000, bisect=3)
    assert tried == [100, 200, 400, 800]
    assert (good, bad) == (800, None)


@pytest.mark.parametrize("start", [1.0, 0.5])
async def test_nothing_passes(start: float) -> None:
    good, bad = await find_max_rate(capacity(0, []), start, 1000, bisect=2)
    assert good == 0.0
    assert bad is not None
