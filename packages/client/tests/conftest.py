"""Helpers shared by the client tests (the generic ones, ``procs``, ``start_api``,
``poller_process`` and ``WAIT``, live in tickerhub_testkit)."""

from __future__ import annotations

__all__ = ["KEY"]

# An API key the api is started with (API_KEYS=KEY) where a test checks authentication.
KEY = "client-test-key-0123456789"
