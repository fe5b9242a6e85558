"""The poller's Prometheus metrics, read from its parts at scrape time.

The batcher, ticker tasks and publisher count in plain ints (``outcomes``,
``durations``, ``misses``, ``fresh_at``, ``published``, ``conflicts``); this
collector turns them into metric families when scraped. Served by
:func:`tickerhub_core.metrics.serve_metrics` on ``METRICS_PORT`` (``__main__``).

Hooks for parts other work adds, read if present so this module need not change:

* ``poller.on_demand``: symbol -> ticker task for the symbols polled because a client
  asked (``tickerhub_poller_symbols{mode="on_demand"}``, and their ``fresh_at`` in the
  oldest quote's age; none while absent);
* ``poller.status``: the source status (``status.py``): one
  ``tickerhub_poller_source_state{source,state}`` per source and state, 1 for the current;
* ``poller.stream_stats``: an object with ``connected: bool`` and ``ticks: int`` for a
  streaming source (``tickerhub_poller_stream_connected``,
  ``tickerhub_poller_stream_ticks_total``), absent for polling sources.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tickerhub_core.metrics import build_info, histogram_family

OUTCOMES = ("ok", "rate_limited", "timeout", "unavailable", "malformed", "no_data")
STATES = ("ok", "degraded", "down", "unknown")


class PollerCollector(Collector):
    def __init__(self, poller: Any, clock: Any = time.monotonic) -> None:
        self._poller = poller
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        poller = self._poller
        batcher = poller.batcher
        requests = CounterMetricFamily(
            "tickerhub_poller_source_requests",
            "Upstream quote requests (one per batch), by outcome.",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:  # all of them, so rate() works from the first failure
            requests.add_metric([outcome], batcher.outcomes.get(outcome, 0))
        yield requests
        yield histogram_family(
            "tickerhub_poller_source_request_duration_seconds",
            "Duration of upstream quote requests, whatever their outcome.",
            batcher.durations,
        )

        # Symbols on demand are polled by tasks of the same kind: their age counts too.
        tickers = [*poller.tickers, *(getattr(poller, "on_demand", None) or {}).values()]
        now = self._clock()
        age = GaugeMetricFamily(
            "tickerhub_poller_oldest_quote_age_seconds",
            "Seconds since the least recently refreshed symbol last got a good quote.",
            value=max((now - t.fresh_at for t in tickers), default=0.0),
        )
        yield age
        yield GaugeMetricFamily(
            "tickerhub_poller_stale_symbols",
            "Symbols currently marked stale (missed cycles).",
            value=sum(1 for t in tickers if t.stale),
        )
        polled = GaugeMetricFamily(
            "tickerhub_poller_symbols",
            "Symbols polled: static (TICKERS) or on_demand (asked for by clients).",
            labels=["mode"],
        )
        polled.add_metric(["static"], len(poller.tickers))
        polled.add_metric(["on_demand"], len(getattr(poller, "on_demand", ()) or ()))
        yield polled

        publisher = poller.publisher
        yield CounterMetricFamily(
            "tickerhub_poller_diffs_published",
            "Diffs written to Redis and published.",
            value=publisher.published,
        )
        yield CounterMetricFamily(
            "tickerhub_poller_publish_conflicts",
            "Publishes refused by the compare-and-set on the seq (another producer wrote); "
            "each is retried after a reload.",
            value=publisher.conflicts,
        )
        yield GaugeMetricFamily(
            "tickerhub_poller_seq", "The seq this poller last published.", value=poller.snapshot.seq
        )
        yield GaugeMetricFamily(
            "tickerhub_poller_redis_up",
            "0 while writes to Redis fail.",
            value=1 if publisher.redis_up else 0,
        )

        status = getattr(poller, "status", None)
        if status is not None:
            state = GaugeMetricFamily(
                "tickerhub_poller_source_state",
                "1 for each source's current state (ok, degraded, down, unknown; GET /status).",
                labels=["source", "state"],
            )
            for name, health in status.sources.items():
                current = health.evaluate()
                for value in STATES:  # every state, so an alert sees 0 -> 1
                    state.add_metric([name, value], 1 if current == value else 0)
            yield state
        leadership = getattr(poller, "leadership", None)
        if leadership is not None:
            yield GaugeMetricFamily(
                "tickerhub_poller_leader",
                "1 while this poller holds the lease and publishes; 0 on standby.",
                value=1 if leadership.leading else 0,
            )
            yield CounterMetricFamily(
                "tickerhub_poller_lease_acquisitions",
                "Times this poller took the lease.",
                value=leadership.terms,
            )

        stream = getattr(poller, "stream_stats", None)
        if stream is not None:
            yield GaugeMetricFamily(
                "tickerhub_poller_stream_connected",
                "1 while the streaming source is connected.",
                value=1 if stream.connected else 0,
            )
            yield CounterMetricFamily(
                "tickerhub_poller_stream_ticks",
                "Ticks received from the streaming source.",
                value=stream.ticks,
            )
            ignored = CounterMetricFamily(
                "tickerhub_poller_stream_ignored_frames",
                "Stream frames ignored (undecodable, no price, a symbol not subscribed), by kind.",
                labels=["kind"],
            )
            for kind, count in sorted((getattr(stream, "ignored", None) or {}).items()):
                ignored.add_metric([kind], count)
            yield ignored


def poller_registry(poller: Any) -> CollectorRegistry:
    """A registry of its own (never the global one) holding the poller's collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PollerCollector(poller))
    build_info(registry, "poller", "tickerhub-poller")
    return registry
