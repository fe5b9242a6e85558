"""Scenario S's clock: a quote's ``volume`` carries when its value was made (pure).

The fake Yahoo streamer sends each tick with ``day_volume`` = the time it was sent
(µs since the epoch), and the offline Yahoo's live quote answers carry the time
they were made the same way (``FAKE_YAHOO_QUOTES=live``). The poller maps both to
the quote's ``volume``, so a client reading a diff knows, without any shared
memory or seq bookkeeping, when the value it just got left the source:

* latency of a tick: receipt time - its ``volume`` (every diff that carries one);
* staleness of what a client holds: sample time - the ``volume`` of each held
  quote. The offline Yahoo's price changes continuously (each answer is a new
  value), so for polling this is how long the client's value has been out of date.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tickerhub_bench.stats import Histogram


def record_volume_clock(message: Mapping[str, Any], now_ns: int, hist: Histogram) -> int:
    """Record receipt - ``volume`` (ms) for every quote in a diff that carries one."""
    now_us = now_ns // 1000
    recorded = 0
    for changes in message.get("data", {}).values():
        stamp = changes.get("volume")
        if isinstance(stamp, int) and stamp > 0:
            hist.record((now_us - stamp) / 1000)
            recorded += 1
    return recorded


def sample_staleness(quotes: Mapping[str, Mapping[str, Any]], now_ns: int, hist: Histogram) -> None:
    """Record the age (ms) of every held quote's value."""
    now_us = now_ns // 1000
    for quote in quotes.values():
        stamp = quote.get("volume")
        if isinstance(stamp, int) and stamp > 0:
            hist.record((now_us - stamp) / 1000)
