"""What both services share for ``/metrics``: plain counters, the scrape-time bridge to
``prometheus_client``, build info, and the poller's small metrics server.

The hot paths (the api's fan-out, the poller's batches) count in plain ints and
:class:`Buckets` on objects they already hold; a collector turns them into
metric families only when Prometheus scrapes. So a frame costs an integer
increment, not a ``prometheus_client`` call with its lock and label lookup.

Every service builds its own :class:`~prometheus_client.CollectorRegistry` and
passes it in: nothing registers with the global default registry, so tests and
two apps in one process do not collide.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import platform
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Seconds: a fan-out or a pub/sub hop is sub-millisecond to a second at worst.
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# Seconds: an HTTP request, a Yahoo call.
SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Buckets:
    """A histogram in plain numbers: ``observe`` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """``[(le, cumulative count), ...]`` as the exposition format wants them."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


def histogram_family(
    name: str,
    documentation: str,
    series: Mapping[tuple[str, ...], Buckets] | Buckets,
    labels: Sequence[str] = (),
) -> HistogramMetricFamily:
    """One histogram family from one :class:`Buckets` or a ``{label values: Buckets}`` map."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    items = series.items() if isinstance(series, Mapping) else [((), series)]
    for values, buckets in items:
        family.add_metric(list(values), buckets.cumulative(), buckets.sum)
    return family


def build_info(registry: CollectorRegistry, service: str, package: str) -> None:
    """``tickerhub_build_info{service, version, python} 1``, the usual join target."""
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:  # running from a source tree without install
        version = "unknown"
    registry.register(_BuildInfo(service, version, platform.python_version()))


class _BuildInfo(Collector):
    def __init__(self, service: str, version: str, python: str) -> None:
        self._labels = [service, version, python]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "tickerhub_build_info",
            "Always 1; the labels say which build runs.",
            labels=["service", "version", "python"],
        )
        family.add_metric(self._labels, 1)
        yield family


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> asyncio.Server:
    """A minimal HTTP server answering ``GET /metrics`` (the poller has no web framework).

    On the event loop rather than ``prometheus_client``'s thread, so collectors read
    the services' counters from the thread that writes them. Returns the started
    server; the caller closes it.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body, ctype = b"405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path == b"/metrics":
                body, ctype = render(registry)
                status = b"200 OK"
            else:
                status, body, ctype = b"404 Not Found", b"try /metrics\n", "text/plain"
            head = (
                b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype.encode() + b"\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            )
            writer.write(head if method == b"HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a scraper that hung up or sent garbage: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server
