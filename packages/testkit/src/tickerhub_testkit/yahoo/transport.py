"""A fake Yahoo on the wire: a ``requests`` transport adapter answering from recordings.

:class:`FakeYahoo` owns a ``requests.Session`` whose transport adapter answers
every ``https://`` request from recorded bodies, routed by host and path:

=============  ==================================================  ======================
route          matches                                             default answer
=============  ==================================================  ======================
``cookie``     ``fc.yahoo.com``                                    404 + ``Set-Cookie: A3``
``crumb``      ``query1|query2.finance.yahoo.com/v1/test/getcrumb`` ``getcrumb.txt``
``quote``      ``*/v7/finance/quote``                              ``quote_v7_AAPL-MSFT.json`` (+)
``chart``      ``*/v8/finance/chart/{symbol}``                     ``chart_v8_AAPL_1d.json`` (+)
``news``       ``finance.yahoo.com/xhr/ncp``                       ``ncp_latestNews_AAPL.json``
``summary``    ``*/v10/finance/quoteSummary/{symbol}``             404 (not recorded)
``search``     ``*/v1/finance/search``                             404 (not recorded)
``consent``    ``guce.yahoo.com``, ``consent.yahoo.com``           200, a page without a form
``other``      anything else                                       404
=============  ==================================================  ======================

(+) per-request variants built from that recording (see below).

A test can replace any route's answer (:meth:`FakeYahoo.set`): a status, a body,
an exception to raise (``requests.exceptions.ReadTimeout`` ...), a delay (longer
than the request's timeout means a ``ReadTimeout`` after ``timeout`` seconds,
as a real socket would), for every request or only the next ``times`` ones.
Every request is recorded and counted per route (:attr:`FakeYahoo.counts`,
:attr:`FakeYahoo.requests`).

Bodies come from :mod:`tickerhub_testkit.yahoo.bodies`; :func:`fake_yahoo` also
resets yfinance's global state (:func:`tickerhub_yahoo.testing.isolated_yfinance`).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

# Before yfinance is imported anywhere: with a requests session, the HTTP errors
# yfinance re-raises are requests' classes.
os.environ.setdefault("YF_DISABLE_CURL_CFFI", "1")

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.response import HTTPResponse

from tickerhub_testkit.yahoo.bodies import (
    A3_COOKIE,
    chart_body,
    news_body,
    quote_body,
    quote_item,
    quote_item_without_price,
    recorded,
    resource,
)
from tickerhub_yahoo.testing import isolated_yfinance

ROUTES = ("cookie", "crumb", "quote", "chart", "news", "summary", "search", "consent", "other")


@dataclass
class Reply:
    """A scripted answer for one route."""

    status: int = 200
    body: Any = None  # dict/list -> JSON, str/bytes -> as is, None -> the route's default
    exc: BaseException | None = None  # raised instead of answering
    delay: float = 0.0  # seconds; beyond the request timeout -> ReadTimeout
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None  # None: every request; n: the next n requests


@dataclass
class Recorded:
    route: str
    method: str
    url: str
    params: dict[str, str]
    body: bytes | None


class _OriginalResponse:
    """Enough of ``http.client.HTTPResponse`` for requests' cookie extraction."""

    def __init__(self, msg: http.client.HTTPMessage) -> None:
        self.msg = msg

    def info(self) -> http.client.HTTPMessage:
        return self.msg

    def isclosed(self) -> bool:
        return True


class _FakeYahooAdapter(BaseAdapter):
    def __init__(self, yahoo: FakeYahoo) -> None:
        super().__init__()
        self._yahoo = yahoo
        self._builder = HTTPAdapter()

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        return self._yahoo._answer(request, timeout, self._builder)

    def close(self) -> None:
        self._builder.close()


class FakeYahoo:
    """Recorded Yahoo answers behind a real ``requests.Session``.

    ``session`` is what goes to yfinance (``session=``). ``known`` symbols get a
    quote and a chart; everything else is unknown to this Yahoo (absent from
    quote answers, 404 on the chart). ``no_price`` symbols get the priceless
    quote entry.
    """

    def __init__(
        self,
        known: set[str] | None = None,
        no_price: set[str] | None = None,
    ) -> None:
        self.known = known  # None: every syntactically sane symbol is known
        self.no_price = set(no_price or ())
        self.counts: Counter[str] = Counter()
        self.requests: list[Recorded] = []
        self._replies: dict[str, list[Reply]] = {}
        self._handlers: dict[str, Callable[[Recorded], tuple[int, Any, dict[str, str]]]] = {}
        self._lock = threading.Lock()
        self.session = requests.Session()
        self.session.mount("https://", _FakeYahooAdapter(self))
        self.session.mount("http://", _FakeYahooAdapter(self))

    # -- scripting ---------------------------------------------------------

    def set(self, route: str, reply: Reply | None = None, **kwargs: Any) -> None:
        """Answer ``route`` with ``reply`` (or ``Reply(**kwargs)``); replaces earlier scripts."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {ROUTES}")
        with self._lock:
            self._replies[route] = [reply or Reply(**kwargs)]

    def then(self, route: str, reply: Reply | None = None, **kwargs: Any) -> None:
        """Queue one more scripted reply after the current ones."""
        with self._lock:
            self._replies.setdefault(route, []).append(reply or Reply(**kwargs))

    def reset(self, route: str | None = None) -> None:
        """Back to the recorded answers (one route or all)."""
        with self._lock:
            if route is None:
                self._replies.clear()
            else:
                self._replies.pop(route, None)

    def handle(
        self, route: str, handler: Callable[[Recorded], tuple[int, Any, dict[str, str]]]
    ) -> None:
        """Compute ``route``'s answers with ``handler(request) -> (status, body, headers)``."""
        self._handlers[route] = handler

    def clear_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.requests.clear()

    def quote_symbols(self) -> list[list[str]]:
        """The symbol list of every quote request, in order."""
        return [r.params.get("symbols", "").split(",") for r in self.requests if r.route == "quote"]

    # -- routing -------------------------------------------------------------

    @staticmethod
    def route_of(host: str, path: str) -> str:
        if host == "fc.yahoo.com":
            return "cookie"
        if host in ("guce.yahoo.com", "consent.yahoo.com"):
            return "consent"
        if host.endswith("finance.yahoo.com"):
            if path == "/v1/test/getcrumb":
                return "crumb"
            if path.rstrip("/") == "/v7/finance/quote":
                return "quote"
            if path.startswith("/v8/finance/chart/"):
                return "chart"
            if path.startswith("/v10/finance/quoteSummary/"):
                return "summary"
            if path == "/v1/finance/search":
                return "search"
            if host == "finance.yahoo.com" and path == "/xhr/ncp":
                return "news"
        return "other"

    def _is_known(self, symbol: str) -> bool:
        return self.known is None or symbol in self.known or symbol in self.no_price

    def _default(self, req: Recorded) -> tuple[int, Any, dict[str, str]]:
        route = req.route
        if route == "cookie":
            return 404, "<html><body>Error 404</body></html>", {"Set-Cookie": A3_COOKIE}
        if route == "crumb":
            return 200, resource("getcrumb.txt"), {"Content-Type": "text/plain;charset=utf-8"}
        if route == "quote":
            symbols = [s for s in req.params.get("symbols", "").split(",") if s]
            items = []
            for s in symbols:
                if s in self.no_price:
                    items.append(quote_item_without_price(s))
                elif self._is_known(s):
                    items.append(quote_item(s))
            return 200, quote_body(items), {}
        if route == "chart":
            symbol = urlsplit(req.url).path.rsplit("/", 1)[-1]
            if not self._is_known(symbol) or symbol in self.no_price:
                return 404, recorded("chart_v8_not_found.json"), {}
            p1 = req.params.get("period1")
            p2 = req.params.get("period2")
            return 200, chart_body(symbol, int(p1) if p1 else None, int(p2) if p2 else None), {}
        if route == "news":
            return 200, news_body(), {}
        if route == "consent":
            return 200, "<html><body>consent</body></html>", {"Content-Type": "text/html"}
        return (
            404,
            {
                "finance": {
                    "result": None,
                    "error": {"code": "Not Found", "description": "HTTP 404 Not Found"},
                }
            },
            {},
        )

    def _next_reply(self, route: str) -> Reply | None:
        with self._lock:
            queue = self._replies.get(route)
            if not queue:
                return None
            reply = queue[0]
            if reply.times is not None:
                reply.times -= 1
                if reply.times <= 0:
                    queue.pop(0)
            return reply

    def _answer(
        self, request: requests.PreparedRequest, timeout: Any, builder: HTTPAdapter
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        host = parts.hostname or ""
        route = self.route_of(host, parts.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        # yfinance sends small in-memory bodies (or none): never a file or an iterator.
        body = (
            request.body.encode()
            if isinstance(request.body, str)
            else cast("bytes | None", request.body)
        )
        rec = Recorded(route, request.method or "GET", request.url or "", params, body)
        with self._lock:
            self.counts[route] += 1
            self.requests.append(rec)

        reply = self._next_reply(route)
        read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
        if reply is not None and reply.delay:
            if read_timeout is not None and reply.delay > read_timeout:
                time.sleep(read_timeout)
                raise requests.exceptions.ReadTimeout(
                    f"fake Yahoo: read timed out ({read_timeout}s)"
                )
            time.sleep(reply.delay)
        if reply is not None and reply.exc is not None:
            raise reply.exc

        if reply is not None and reply.body is not None:
            status, payload, headers = reply.status, reply.body, dict(reply.headers)
        else:
            handler = self._handlers.get(route, self._default)
            status, payload, headers = handler(rec)
            if reply is not None:
                status = reply.status
                headers.update(reply.headers)
        return self._build(request, status, payload, headers, builder)

    @staticmethod
    def _build(
        request: requests.PreparedRequest,
        status: int,
        payload: Any,
        headers: dict[str, str],
        builder: HTTPAdapter,
    ) -> requests.Response:
        if isinstance(payload, dict | list):
            data = json.dumps(payload, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json;charset=utf-8")
        elif isinstance(payload, str):
            data = payload.encode()
            headers.setdefault("Content-Type", "text/html;charset=utf-8")
        else:
            data = payload or b""
        msg = http.client.HTTPMessage()
        for key, value in headers.items():
            msg[key] = value
        msg["Content-Length"] = str(len(data))
        raw = HTTPResponse(
            body=io.BytesIO(data),
            headers=dict(msg.items()),
            status=status,
            reason=http.client.responses.get(status, ""),
            preload_content=False,
            decode_content=False,
            # a stand-in, not an HTTPResponse: requests' cookie extraction reads only .msg
            original_response=_OriginalResponse(msg),  # type: ignore[arg-type]
        )
        return builder.build_response(request, raw)


@contextmanager
def fake_yahoo(
    cache_dir: str | Path, known: set[str] | None = None, no_price: set[str] | None = None
) -> Iterator[FakeYahoo]:
    """``isolated_yfinance`` plus a :class:`FakeYahoo` whose session is closed afterwards."""
    with isolated_yfinance(cache_dir):
        yahoo = FakeYahoo(known=known, no_price=no_price)
        try:
            yield yahoo
        finally:
            yahoo.session.close()
