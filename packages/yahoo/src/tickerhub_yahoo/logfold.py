"""Fold yfinance's own repeating warnings into TickerHub's condition lines.

While Yahoo is unreachable, yfinance 1.7 logs a warning on every request before
failing it (``Cookie/crumb fetch failed (DNSError), continuing without crumb``),
so a poller polling every 5 s printed it every 5 s beside its own line saying
the same ("yfinance: Yahoo unreachable: DNSError; retrying with backoff", the
poller's source status). :class:`YahooLogFold`, a filter on the ``yfinance``
logger installed by :func:`tickerhub_yahoo.client.load`, keeps them out:

* the warnings listed in :data:`FOLDED` (yfinance's message texts, 1.7; a test
  fails if they change) say only that Yahoo is unreachable, which the callers
  report (the poller's condition log, the api's history errors): they are
  suppressed and counted (:attr:`YahooLogFold.counts`);
* any other yfinance warning or error passes the first time its text is seen
  within an episode, and its repeats are counted, not logged.

An episode ends when a Yahoo call succeeds (:meth:`YahooLogFold.succeeded`, called
by the adapter): the next failure's messages show again.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter

LOGGER = "yfinance"

# name -> pattern of the message text (yfinance/data.py, 1.7).
FOLDED: dict[str, re.Pattern[str]] = {
    "crumb_failed": re.compile(r"Cookie/crumb fetch failed \(\w+\), continuing without crumb$"),
    "crumb_rate_limited": re.compile(
        r"Crumb fetch rate-limited \(HTTP 429\), continuing without crumb$"
    ),
    "cookie_failed": re.compile(
        r"Cookie fetch from fc\.yahoo\.com failed \(\w+\), continuing without it$"
    ),
}


def folded_kind(message: str) -> str | None:
    """The :data:`FOLDED` name ``message`` matches, or None."""
    return next((name for name, pattern in FOLDED.items() if pattern.search(message)), None)


class YahooLogFold(logging.Filter):
    """Suppresses the :data:`FOLDED` warnings and repeats of any other within an episode."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()  # yfinance logs from the worker threads
        self._seen: set[str] = set()
        self.counts: Counter[str] = Counter()  # suppressed records, by kind or text

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # DEBUG/INFO are off unless asked for; leave them alone
        message = record.getMessage()
        kind = folded_kind(message)
        with self._lock:
            if kind is not None:
                self.counts[kind] += 1
                return False
            if message in self._seen:
                self.counts[message[:200]] += 1
                return False
            if len(self._seen) < 1000:  # bounded, whatever yfinance says
                self._seen.add(message)
            return True

    def succeeded(self) -> None:
        """A Yahoo call worked: the episode is over; later failures show again."""
        if self._seen:
            with self._lock:
                self._seen.clear()


_fold = YahooLogFold()
_installed = False
_install_lock = threading.Lock()


def install() -> YahooLogFold:
    """Put the filter on the ``yfinance`` logger (once per process); return it."""
    global _installed
    with _install_lock:
        if not _installed:
            logging.getLogger(LOGGER).addFilter(_fold)
            _installed = True
    return _fold


def fold() -> YahooLogFold:
    """The process's filter (installed or not)."""
    return _fold
