"""An optional cap on REST requests in flight, so REST load cannot stall the streams.

REST and the WebSocket streams share one event loop per process. With
``REST_MAX_CONCURRENT`` set, a request arriving while that many are being
served is answered ``503`` with ``Retry-After: 1`` at once, before any work.
The probes (``/healthz``, ``/readyz``) are exempt: an orchestrator must see the
truth, and ``/readyz`` is cheap (cached). Off by default (``0``): a reverse
proxy's rate limit is the better tool where one exists (docs/operations.md).
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

EXEMPT = frozenset({"/healthz", "/readyz"})
BODY = b'{"detail":"the api is overloaded, try again shortly"}'


class RestConcurrencyCap:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "REST_MAX_CONCURRENT (%d) reached: refused %d requests so far",
                    self.limit,
                    self.refused,
                )
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(BODY)).encode()),
                        (b"retry-after", b"1"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": BODY})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
