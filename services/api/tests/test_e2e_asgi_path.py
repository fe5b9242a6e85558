"""Every end-to-end test of test_e2e.py once more, with ``WS_FAST_PATH=false``.

The api subprocesses inherit this environment (testkit's ``ServiceProcess``),
so they send through plain ASGI (``stream/senders.AsgiSender``) instead of the
direct frame path. The tests are collected from test_e2e.py, not copied; once
the e2e helpers offer an api fixture, this becomes a parameter of that fixture.
"""

from __future__ import annotations

from typing import Any

import pytest

from tickerhub_testkit.processes import Procs, start_api

from .test_e2e import *  # noqa: F403  (collects the same tests and their fixtures)


@pytest.fixture(autouse=True)
def _asgi_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_FAST_PATH", "false")


def test_the_api_reads_the_setting(redis_server: Any, procs: Procs) -> None:
    """The subprocesses started here really take the ASGI path (what the api logs at start)."""
    api = start_api(procs, redis_server.url, LOG_LEVEL="INFO")
    assert "WebSocket frames: plain ASGI sends" in api.output(), api.output()
