"""One classification of everything a Yahoo call can raise, for both services.

:func:`classify` turns an exception from yfinance, ``requests`` or ``curl_cffi``
into a :class:`Failure`: a :class:`Kind` (what the caller should do about it)
and a message. The poller maps the kind to its ``SourceError`` classes, the api
to an HTTP status (:attr:`Kind.http_status`). The table, in the order checked,
is in ``docs/yfinance.md``; keep the two in step.

Types, not names: every class tested here is one that yfinance, ``requests`` or
``curl_cffi`` exports. The single string test left is yfinance's outage page,
which it reports as a plain ``YFDataException`` whose message says
"CURRENTLY DOWN" (there is no subclass for it).

Network failures are checked before HTTP statuses: curl_cffi attaches a
``response`` with ``status_code == 0`` to a DNS or connect failure, which must
read as "unavailable", not as "Yahoo answered HTTP 0".

Importing this module does not import yfinance (the api keeps it lazy);
:func:`classify` imports the exception classes through :func:`tickerhub_yahoo.client.load`.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What went wrong, as far as a caller's reaction goes."""

    RATE_LIMITED = "rate_limited"  # back off longer; Yahoo asked us to slow down
    UNAVAILABLE = "unavailable"  # timeout, network, DNS, 5xx, outage page, cookie refused
    NOT_FOUND = "not_found"  # unknown symbol, no data in the range
    INVALID = "invalid"  # the request itself is wrong (period/interval)
    MALFORMED = "malformed"  # Yahoo answered, but not in a shape we understand
    UNEXPECTED = "unexpected"  # an exception type nobody planned for (a bug somewhere)

    @property
    def http_status(self) -> int:
        """The status a gateway answers its own client with."""
        return _HTTP_STATUS[self]


_HTTP_STATUS = {
    Kind.RATE_LIMITED: 503,
    Kind.UNAVAILABLE: 503,
    Kind.NOT_FOUND: 404,
    Kind.INVALID: 422,
    Kind.MALFORMED: 502,
    Kind.UNEXPECTED: 502,
}


@dataclass(frozen=True, slots=True)
class Failure:
    kind: Kind
    message: str


class YahooError(Exception):
    """Raised by this package's own checks (e.g. the timezone lookup) with its kind."""

    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# 401/403: cookie or crumb refused even after yfinance's retry with its other
# cookie strategy; 408: Yahoo's own timeout. All pass with time.
_UNAVAILABLE_STATUSES = frozenset({401, 403, 408})


def status_failure(status: int) -> Failure:
    """The failure for an HTTP error status (>= 400) from Yahoo."""
    if status == 429:
        return Failure(Kind.RATE_LIMITED, "Yahoo is rate limiting us (HTTP 429)")
    if status == 404:
        return Failure(Kind.NOT_FOUND, "Yahoo answered HTTP 404 (unknown symbol)")
    if status >= 500 or status in _UNAVAILABLE_STATUSES:
        return Failure(Kind.UNAVAILABLE, f"Yahoo answered HTTP {status}")
    return Failure(Kind.MALFORMED, f"Yahoo answered HTTP {status}")


def _http_status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) and status >= 400 else None


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` for ``exc`` (any exception a Yahoo call raised)."""
    from tickerhub_yahoo.client import load

    yf = load()
    import curl_cffi.requests.exceptions as curl
    import requests.exceptions as rq

    errors = yf.exceptions
    name = type(exc).__name__
    if isinstance(exc, YahooError):
        return Failure(exc.kind, str(exc))
    if isinstance(exc, errors.YFRateLimitError):
        return Failure(Kind.RATE_LIMITED, "Yahoo is rate limiting us; try again later")
    if isinstance(exc, errors.YFTickerMissingError):  # prices / timezone / earnings missing
        return Failure(Kind.NOT_FOUND, str(exc))
    if isinstance(exc, errors.YFInvalidPeriodError):
        return Failure(Kind.INVALID, str(exc))
    if isinstance(exc, errors.YFDataException) and "CURRENTLY DOWN" in str(exc):
        return Failure(Kind.UNAVAILABLE, "Yahoo Finance is down ('Will be right back')")
    # Network before status (see the module docstring). JSON errors are
    # RequestExceptions (and OSErrors) too, so they are excluded here.
    json_errors = (json.JSONDecodeError, rq.InvalidJSONError, curl.InvalidJSONError)
    if isinstance(exc, json_errors):
        return Failure(Kind.MALFORMED, f"Yahoo answered with something that is not JSON: {name}")
    network = (
        TimeoutError,
        rq.Timeout,
        rq.ConnectionError,  # DNS, refused, reset, proxy, SSL
        rq.ChunkedEncodingError,
        curl.Timeout,
        curl.ConnectionError,  # DNSError, SSLError, CertificateVerifyError
        curl.ProxyError,
        curl.ChunkedEncodingError,
        curl.IncompleteRead,
        curl.SessionClosed,
        http.client.IncompleteRead,  # not an OSError
    )
    if isinstance(exc, network):
        return Failure(Kind.UNAVAILABLE, f"Yahoo unreachable: {name}")
    status = _http_status(exc)
    if status is not None:
        return status_failure(status)
    if isinstance(exc, OSError):  # sockets; any other requests / curl_cffi error
        return Failure(Kind.UNAVAILABLE, f"Yahoo unreachable: {name}")
    shape_errors = (errors.YFException, KeyError, TypeError, ValueError, IndexError, AttributeError)
    if isinstance(exc, shape_errors):
        return Failure(Kind.MALFORMED, f"unexpected answer from Yahoo: {name}: {exc}")
    return Failure(Kind.UNEXPECTED, f"Yahoo call failed: {name}: {exc}")
