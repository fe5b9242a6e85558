"""The shared Redis client factory, the retry helper and list settings."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from pydantic_settings import BaseSettings

from tickerhub_core.backoff import Backoff
from tickerhub_core.logs import ConditionLog
from tickerhub_core.redis_client import CONNECT_TIMEOUT, HEALTH_CHECK_INTERVAL, redis_client
from tickerhub_core.retry import retry_until_done
from tickerhub_core.settings import CommonSettings, ListSetting

log = logging.getLogger(__name__)


async def test_redis_client_is_built_from_the_settings() -> None:
    client = redis_client(CommonSettings(redis_url="redis://db.invalid:6380/2"), socket_timeout=7.5)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("db.invalid", 6380, 2)
        assert kwargs["socket_connect_timeout"] == CONNECT_TIMEOUT
        assert kwargs["socket_timeout"] == 7.5
        assert kwargs["health_check_interval"] == HEALTH_CHECK_INTERVAL
        assert kwargs.get("decode_responses", False) is False
    finally:
        await client.aclose()


def quick_backoff() -> Backoff:
    return Backoff(base=0.001, cap=0.002, rng=random.Random(1))


async def test_retry_backs_off_logs_the_condition_once_and_resets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=__name__)
    calls = 0

    async def attempt() -> int:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError(f"down {calls}")
        return 42

    backoff = quick_backoff()
    result = await retry_until_done(
        attempt,
        errors=(OSError,),
        backoff=backoff,
        condition=ConditionLog(log, "redis"),
        describe=lambda exc: f"failed ({exc})",
    )
    assert result == 42
    assert calls == 4
    assert backoff.attempts == 0  # reset on success
    messages = [r.getMessage() for r in caplog.records if r.name == __name__]
    assert messages == ["redis: failed (down 1)", messages[1]]
    assert messages[1].startswith("redis: recovered after 3 failures")


async def test_retry_raises_what_it_was_not_told_to_retry() -> None:
    async def attempt() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await retry_until_done(
            attempt,
            errors=(OSError,),
            backoff=quick_backoff(),
            condition=ConditionLog(log, "redis"),
            describe=str,
        )


@pytest.mark.parametrize("fails", [False, True], ids=["returned", "failed"])
async def test_retry_honours_a_cancel_the_attempt_swallowed(
    fails: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py can return normally (or fail) with our cancel pending: stop at once.

    Neither a result nor an outage is reported: the task is cancelled right after
    the attempt, before the condition log or the backoff sleep.
    """
    caplog.set_level(logging.INFO, logger=__name__)
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # requested, and never delivered: like a library swallowing it
        if fails:
            raise ConnectionError("lost while cancelling")
        return "done"

    task = asyncio.create_task(
        retry_until_done(
            attempt,
            errors=(OSError,),
            backoff=quick_backoff(),
            condition=ConditionLog(log, "redis"),
            describe=str,
        )
    )
    await asyncio.wait({task})
    assert task.cancelled()
    assert calls == 1
    assert [r for r in caplog.records if r.name == __name__] == []


class ListSettings(BaseSettings):
    items: ListSetting = []


def test_list_setting_from_the_environment_is_split_not_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ITEMS", " a, b,,c ,")
    assert ListSettings().items == ["a", "b", "c"]
    monkeypatch.setenv("ITEMS", "")
    assert ListSettings().items == []
    assert ListSettings(items=["x ", "y"]).items == ["x", "y"]
