"""The classifier's table (docs/yfinance.md), one row per case, with real exception types."""

from __future__ import annotations

import http.client
import json
import socket
from types import SimpleNamespace

import curl_cffi.requests.exceptions as curl
import pytest
import requests
import urllib3.exceptions
import yfinance.exceptions as yfe
from curl_cffi.const import CurlECode

from tickerhub_yahoo import Kind, YahooError, classify


def requests_http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} error", response=response)


def curl_http_error(status: int) -> curl.HTTPError:
    return curl.HTTPError(f"HTTP Error {status}", 0, SimpleNamespace(status_code=status))


def dns_failure_requests() -> requests.ConnectionError:
    # No connection or pool object behind them: only the exception types matter here.
    reason = urllib3.exceptions.NameResolutionError(
        "query1.finance.yahoo.com",
        None,  # type: ignore[arg-type]
        socket.gaierror(-2, "Name or service not known"),
    )
    return requests.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            None,  # type: ignore[arg-type]
            "https://query1.finance.yahoo.com/",
            reason,
        )
    )


CASES: list[tuple[str, BaseException, Kind]] = [
    ("own-check", YahooError(Kind.NOT_FOUND, "unknown symbol X"), Kind.NOT_FOUND),
    ("yf-rate-limit", yfe.YFRateLimitError(), Kind.RATE_LIMITED),
    ("yf-tz-missing", yfe.YFTzMissingError("X"), Kind.NOT_FOUND),
    ("yf-prices-missing", yfe.YFPricesMissingError("X", ""), Kind.NOT_FOUND),
    ("yf-invalid-period", yfe.YFInvalidPeriodError("X", "7y", "1d,5d"), Kind.INVALID),
    (
        "yf-outage-page",
        yfe.YFDataException("*** YAHOO! FINANCE IS CURRENTLY DOWN! ***"),
        Kind.UNAVAILABLE,
    ),
    ("yf-other", yfe.YFDataException("odd"), Kind.MALFORMED),
    ("http-429", requests_http_error(429), Kind.RATE_LIMITED),
    ("http-404", requests_http_error(404), Kind.NOT_FOUND),
    ("http-401", requests_http_error(401), Kind.UNAVAILABLE),
    ("http-403", requests_http_error(403), Kind.UNAVAILABLE),
    ("http-408", requests_http_error(408), Kind.UNAVAILABLE),
    ("http-500", requests_http_error(500), Kind.UNAVAILABLE),
    ("http-503-curl", curl_http_error(503), Kind.UNAVAILABLE),
    ("http-400", requests_http_error(400), Kind.MALFORMED),
    ("http-429-curl", curl_http_error(429), Kind.RATE_LIMITED),
    # curl_cffi attaches a response with status 0 to a DNS failure: not "HTTP 0".
    (
        "dns-curl-status-0",
        curl.DNSError(
            "Could not resolve host", CurlECode.COULDNT_RESOLVE_HOST, SimpleNamespace(status_code=0)
        ),
        Kind.UNAVAILABLE,
    ),
    ("dns-requests", dns_failure_requests(), Kind.UNAVAILABLE),
    ("dns-socket", socket.gaierror(-2, "Name or service not known"), Kind.UNAVAILABLE),
    ("connect-refused", ConnectionRefusedError(111, "refused"), Kind.UNAVAILABLE),
    ("read-timeout-requests", requests.ReadTimeout("read timed out"), Kind.UNAVAILABLE),
    (
        "connect-timeout-curl",
        curl.ConnectTimeout("timed out", CurlECode.OPERATION_TIMEDOUT),
        Kind.UNAVAILABLE,
    ),
    ("timeout-builtin", TimeoutError(), Kind.UNAVAILABLE),
    ("ssl-curl", curl.SSLError("bad cert", CurlECode.PEER_FAILED_VERIFICATION), Kind.UNAVAILABLE),
    ("chunked-requests", requests.exceptions.ChunkedEncodingError("cut"), Kind.UNAVAILABLE),
    ("incomplete-read", http.client.IncompleteRead(b"par"), Kind.UNAVAILABLE),
    ("remote-disconnected", http.client.RemoteDisconnected("closed"), Kind.UNAVAILABLE),
    ("json-stdlib", json.JSONDecodeError("Expecting value", "<html>", 0), Kind.MALFORMED),
    ("json-requests", requests.JSONDecodeError("Expecting value", "<html>", 0), Kind.MALFORMED),
    ("json-curl", curl.JSONDecodeError("Expecting value", 0), Kind.MALFORMED),
    ("key-error", KeyError("quoteResponse"), Kind.MALFORMED),
    ("type-error", TypeError("NoneType is not subscriptable"), Kind.MALFORMED),
    ("attribute-error", AttributeError("no attribute"), Kind.MALFORMED),
    ("unknown", RuntimeError("something else"), Kind.UNEXPECTED),
]


@pytest.mark.parametrize(("exc", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(exc: BaseException, kind: Kind) -> None:
    failure = classify(exc)
    assert failure.kind is kind, failure
    assert failure.message
    assert "HTTP 0" not in failure.message


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (Kind.RATE_LIMITED, 503),
        (Kind.UNAVAILABLE, 503),
        (Kind.NOT_FOUND, 404),
        (Kind.INVALID, 422),
        (Kind.MALFORMED, 502),
        (Kind.UNEXPECTED, 502),
    ],
)
def test_http_status_of_each_kind(kind: Kind, status: int) -> None:
    assert kind.http_status == status


def test_every_kind_has_a_case() -> None:
    assert {kind for _, _, kind in CASES} == set(Kind)
