"""How the services use Python's cyclic garbage collector.

Both services hold many long-lived objects (the api: tens per WebSocket
connection; the poller: yfinance and pandas, about a million from imports) and
create short-lived ones at a high rate. With CPython's default thresholds
(700, 10, 10) a full collection walks all of them every few seconds and stops
the event loop meanwhile: in the api during a reconnect storm of 10,000 clients
that was 2.7 s of collector time in 11 s, single pauses up to 444 ms; in the
poller, stalls of 200 ms at 1,000 ticks/s (docs/benchmarks.md).

:func:`settle_heap` is called once, after imports and set-up and before
serving: ``gc.freeze()`` moves everything alive then (modules, the app, settings)
out of the collector's sight for good, and a larger first-generation threshold
makes collections rarer, so fewer of them reach the old generations. Garbage
cycles still get collected; reference counting frees everything else at once.
"""

from __future__ import annotations

import gc

# Allocations (net, of container objects) between young collections; then every
# 20th young collection also collects the middle generation, every 20th of those
# considers a full one (which CPython runs only once enough has been promoted).
THRESHOLDS = (10_000, 20, 20)


def settle_heap() -> None:
    """Freeze what is alive now and raise the collector's thresholds (see the module)."""
    gc.collect()  # what start-up left as garbage is not frozen with the rest
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
