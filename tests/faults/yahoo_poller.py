"""The real poller (its ``main``, SOURCE=yfinance) with FakeYahoo on the wire, as a process.

``python tests/faults/yahoo_poller.py`` with the poller's usual environment plus
``FAKE_YAHOO_STATE=<file>``: read on every request, ``down`` makes the Yahoo
requests fail as a DNS failure does (``requests``' ``ConnectionError``, raised in
the transport, so yfinance's own cookie/crumb handling and warnings run), anything
else answers from the recordings. yfinance's code runs unchanged; only
``build_source`` is given FakeYahoo's session.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import requests

from tickerhub_testkit.yahoo import FakeYahoo, Recorded, isolated_yfinance

DNS_FAILURE = (
    "HTTPSConnectionPool(host='query1.finance.yahoo.com', port=443): Max retries exceeded "
    "(Caused by NameResolutionError: Failed to resolve 'query1.finance.yahoo.com')"
)


def main() -> None:
    state = Path(os.environ["FAKE_YAHOO_STATE"])
    with isolated_yfinance(tempfile.mkdtemp(prefix="tickerhub-fake-yf-")):
        yahoo = FakeYahoo()

        def answer(req: Recorded) -> tuple[int, Any, dict[str, str]]:
            if state.read_text().strip() == "down":
                raise requests.exceptions.ConnectionError(DNS_FAILURE)
            return yahoo._default(req)

        # Not the cookie route: with a requests session (FakeYahoo's), yfinance 1.7's
        # cookie fetch names curl_cffi's DNSError in an except clause, which raises
        # AttributeError on any failure there. The crumb fails instead (yfinance then
        # logs "Cookie/crumb fetch failed (ConnectionError)" as it does on a real DNS
        # failure), and so does every data request.
        for route in ("crumb", "quote", "news"):
            yahoo.handle(route, answer)

        import tickerhub_poller.__main__ as poller_main
        from tickerhub_poller.settings import PollerSettings
        from tickerhub_poller.sources.yfinance import YFinanceSource

        def build_source(settings: PollerSettings) -> YFinanceSource:
            return YFinanceSource(
                max_batch=settings.batch_size,
                timeout=settings.request_timeout,
                session=yahoo.session,
            )

        poller_main.build_source = build_source  # type: ignore[assignment]
        poller_main.main()


if __name__ == "__main__":
    main()
