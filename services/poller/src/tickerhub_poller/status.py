"""The source's health: per source (``poll``, ``stream``) a state a person can act on.

Each source is a :class:`SourceHealth` fed with outcomes where they are already
observed: the quote batcher's per-request count (the seam ``/metrics`` counts
``tickerhub_poller_source_requests`` at) and each news fetch.
:class:`~tickerhub_poller.source_status.SourceStatus` holds them and renders the
document :class:`~tickerhub_poller.status_writer.StatusWriter` keeps in Redis
(``source:status``, docs/protocol.md) for the api's ``GET /status``.

The rule (:func:`state_of`), per source:

* ``unknown``: nothing reported yet (just started);
* ``ok``: the last outcome succeeded, no symbol's last batch failed and (for a
  connected source such as the stream) it is connected;
* ``degraded``: failing (the last outcome failed, some symbols' last batch
  failed, or disconnected) but fewer than :data:`DOWN_AFTER` failures in a row
  and a success within :data:`DOWN_AFTER_SECONDS`: part of the data still flows;
* ``down``: failing with :data:`DOWN_AFTER` or more failures in a row, or no
  success for :data:`DOWN_AFTER_SECONDS` (or none since the start).

Entering ``down`` is logged once ("yfinance: Yahoo unreachable: DNSError; retrying
with backoff"), with a summary a minute while it lasts and one line when it
ends (:class:`~tickerhub_core.logs.ConditionLog`); while a source is down the
batcher and news poller keep their own per-batch lines quiet (:attr:`SourceHealth.down`),
so one outage is one line, not one per feed and retry.

Errors are kept as class + a short message passed through :func:`scrub`: no
query strings (crumbs, keys), no cookies or tokens. Pure logic: no I/O here.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, Literal

from tickerhub_core.logs import ConditionLog
from tickerhub_core.models import iso_utc
from tickerhub_poller.sources.base import NoDataError

log = logging.getLogger(__name__)

State = Literal["unknown", "ok", "degraded", "down"]

DOWN_AFTER = 3  # failures in a row
DOWN_AFTER_SECONDS = 60.0  # failing with no success for this long
MAX_ERROR_CHARS = 200

# A URL's query string may carry a crumb or a key: keep scheme, host and path only.
_QUERY = re.compile(r"((?:https?|wss?)://[^\s?#'\"]+)[?#][^\s'\"]*", re.IGNORECASE)
_SECRET = re.compile(
    r"\b(crumb|cookie|set-cookie|api[_-]?key|token|authorization|password|secret|a[13]s?)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&)]+)",
    re.IGNORECASE,
)


def scrub(text: str) -> str:
    """``text`` without query strings or secret-looking values, at most 200 characters."""
    text = _QUERY.sub(r"\1?…", text)
    text = _SECRET.sub(r"\1\2***", text)
    text = " ".join(text.split())  # one line: tracebacks and bodies have newlines
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def error_summary(error: BaseException | str, at: float) -> dict[str, Any]:
    """``{"type", "message", "at"}`` for the status document (message scrubbed)."""
    if isinstance(error, BaseException):
        kind, message = type(error).__name__, str(error) or type(error).__name__
    else:
        kind, message = "Error", error
    return {"type": kind, "message": scrub(message), "at": iso_utc(at)}


def state_of(
    *,
    reported: bool,
    consecutive_failures: int,
    last_success: float | None,
    failing_symbols: int,
    connected: bool | None,
    now: float,
    down_after: int = DOWN_AFTER,
    down_after_seconds: float = DOWN_AFTER_SECONDS,
) -> State:
    """The state of one source (the rule in the module docstring). ``connected`` is
    ``None`` for sources without a connection."""
    if not reported:
        return "unknown"
    failing = consecutive_failures > 0 or failing_symbols > 0 or connected is False
    if not failing:
        return "ok"
    if last_success is None or consecutive_failures >= down_after:
        return "down"
    if now - last_success >= down_after_seconds:
        return "down"
    return "degraded"


class SourceHealth:
    """One source's counters and state; the API producers report through.

    Polling (the batcher and news poller call these): :meth:`record` with the
    outcome of each upstream request (``None`` for success).

    A push source (the stream, ``source="stream"``) reports its connection:
    :meth:`connected` when a connection is up (a success), :meth:`disconnected`
    when it drops (with the error if there was one: counted as a failure),
    :meth:`failed` when a connect attempt fails, :meth:`tick` per tick received
    (cheap: two assignments while healthy). ``requests`` counts connect attempts.
    """

    def __init__(
        self,
        name: str,
        label: str,
        *,
        log_conditions: bool = True,
        failing_symbols: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._clock = clock
        self._failing_symbols = failing_symbols
        self._condition = ConditionLog(log, label, clock=clock) if log_conditions else None
        self.reported = False
        self.requests = 0
        self.consecutive_failures = 0
        self.last_success: float | None = None
        self.last_error: dict[str, Any] | None = None
        self.is_connected: bool | None = None  # None: not a connected source
        self.ticks: int | None = None
        self._state: State = "unknown"
        self._error_text = "no success yet"
        # Told the new state when it changes (the writer writes at once).
        self.on_change: Callable[[], None] | None = None

    # -- reporting ---------------------------------------------------------------

    def record(self, error: BaseException | None) -> None:
        """One upstream request's outcome. ``NoDataError`` (Yahoo answered: it has no
        data for a symbol) counts as an answer, not a failure of the source."""
        self.requests += 1
        if error is None or isinstance(error, NoDataError):
            self.succeeded()
        else:
            self.failed(error)

    def succeeded(self) -> None:
        self.reported = True
        self.consecutive_failures = 0
        self.last_success = self._clock()
        self.evaluate()

    def failed(self, error: BaseException | str) -> None:
        now = self._clock()
        self.reported = True
        self.consecutive_failures += 1
        self.last_error = error_summary(error, now)
        self._error_text = self._describe(error)
        self.evaluate(failure=True)

    def connected(self) -> None:
        self.requests += 1
        self.is_connected = True
        self.ticks = self.ticks or 0
        self.succeeded()

    def disconnected(self, error: BaseException | str | None = None) -> None:
        self.is_connected = False
        if error is not None:
            self.failed(error)
        else:
            self.reported = True
            self.evaluate()

    def tick(self) -> None:
        self.ticks = (self.ticks or 0) + 1
        self.last_success = self._clock()
        if self.consecutive_failures:
            self.succeeded()

    # -- reading -----------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def down(self) -> bool:
        """True while this source is ``down``: per-feed failure lines stay quiet."""
        return self._state == "down"

    def failing_symbols(self) -> int:
        return self._failing_symbols() if self._failing_symbols is not None else 0

    def evaluate(self, failure: bool = False) -> State:
        """Recompute the state (also as time passes: the writer calls this); log a change
        into or out of ``down``; return the state. ``failure``: called for a failure
        (counted in the condition's summary)."""
        state = state_of(
            reported=self.reported,
            consecutive_failures=self.consecutive_failures,
            last_success=self.last_success,
            failing_symbols=self.failing_symbols(),
            connected=self.is_connected,
            now=self._clock(),
        )
        before, self._state = self._state, state
        if self._condition is not None:
            if state == "down" and (failure or before != "down"):
                # Once on entering, then at most a summary a minute (ConditionLog).
                self._condition.failed(f"{self._error_text}; retrying with backoff")
            elif state != "down":
                self._condition.recovered()
        if state != before and self.on_change is not None:
            self.on_change()
        return state

    def document(self) -> dict[str, Any]:
        """This source's part of the status document."""
        return {
            "state": self.evaluate(),
            "last_success": iso_utc(self.last_success),
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "requests": self.requests,
            "failing_symbols": self.failing_symbols(),
            "connected": self.is_connected,
            "ticks": self.ticks,
        }

    @staticmethod
    def _describe(error: BaseException | str) -> str:
        if isinstance(error, str):
            return scrub(error)
        text = scrub(str(error)) or type(error).__name__
        return f"{text} ({type(error).__name__})"
