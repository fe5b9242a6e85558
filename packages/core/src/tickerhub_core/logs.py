"""Logging set-up and a logger for conditions that persist.

A Redis outage or a Yahoo rate limit can last minutes; logging every retry
would bury everything else. :class:`ConditionLog` logs when a condition starts,
a summary at most every ``every`` seconds while it lasts, and when it clears.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``
# (except uvicorn's ``color_message``, the same text with terminal colours).
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)
# uvicorn's access log passes (client_addr, method, full_path, http_version, status_code).
_ACCESS_FIELDS = ("peer", "method", "path", "http_version", "status")


def configure_logging(
    level: str, fmt: str = "text", redact: Callable[[str], str] | None = None
) -> None:
    """Log to stderr at ``level``, as text lines or (``fmt="json"``) one JSON object per line.

    Both services call this first thing, before uvicorn (which is told not to
    configure logging), so uvicorn's error and access logs come out the same way.
    ``redact`` (the api's key scrubber) also cleans the JSON fields that ``extra=``
    and the access log add; the message itself is cleaned by the api's filter.
    """
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(redact))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra fields, "exc"?}``, one line per record."""

    def __init__(self, redact: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            entry.update(zip(_ACCESS_FIELDS, args, strict=True))
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        if self._redact is not None:
            for key, value in entry.items():
                if isinstance(value, str) and key not in ("ts", "level", "logger"):
                    entry[key] = self._redact(value)
        return orjson.dumps(entry, default=str).decode()


class ConditionLog:
    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._every = every
        self._clock = clock
        self._since: float | None = None
        self._last_log = 0.0
        self._count = 0

    @property
    def active(self) -> bool:
        return self._since is not None

    def failed(self, detail: str) -> None:
        now = self._clock()
        self._count += 1
        if self._since is None:
            self._since = self._last_log = now
            self._logger.warning("%s: %s", self._what, detail)
        elif now - self._last_log >= self._every:
            self._last_log = now
            self._logger.warning(
                "%s: still failing after %d attempts over %.0fs (last: %s)",
                self._what,
                self._count,
                now - self._since,
                detail,
                extra={"duration_s": round(now - self._since, 3), "attempts": self._count},
            )

    def recovered(self) -> None:
        if self._since is None:
            return
        duration = self._clock() - self._since
        self._logger.info(
            "%s: recovered after %d failures over %.1fs",
            self._what,
            self._count,
            duration,
            extra={"duration_s": round(duration, 3), "attempts": self._count},
        )
        self._since = None
        self._count = 0
