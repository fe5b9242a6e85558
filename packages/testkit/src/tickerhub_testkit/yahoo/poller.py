"""``python -m tickerhub_testkit.yahoo.poller``: the real poller on the offline Yahoo.

The ``poller`` console script's own ``serve`` with ``SOURCE=yfinance`` semantics
(yfinance's code parses every answer, the stream connects to ``STREAM_URL``), but
the HTTP answers come from :class:`~tickerhub_testkit.yahoo.FakeYahoo` in this
process: a subprocess poller for end-to-end tests and the freshness benchmark,
on a machine that cannot reach Yahoo.

``FAKE_YAHOO_QUOTES=live`` makes every quote answer fresh: ``regularMarketTime``
is the answer's second, ``regularMarketVolume`` its time in µs (so a client can
tell how old the value it holds is) and the price moves with it. The default,
``recorded``, answers the recordings as they are.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

from tickerhub_core.logs import configure_logging
from tickerhub_core.settings import load_settings
from tickerhub_testkit.yahoo.bodies import quote_body, quote_item
from tickerhub_testkit.yahoo.transport import Recorded, fake_yahoo


def live_quotes(request: Recorded) -> tuple[int, object, dict[str, str]]:
    now = time.time()
    symbols = [s for s in request.params.get("symbols", "").split(",") if s]
    items = []
    for symbol in symbols:
        item = quote_item(symbol)
        item["regularMarketPrice"] = round(item["regularMarketPrice"] * (1 + (now % 60) / 6000), 4)
        item["regularMarketTime"] = int(now)
        item["regularMarketVolume"] = int(now * 1_000_000)
        items.append(item)
    return 200, quote_body(items), {}


def main() -> None:
    from tickerhub_poller.__main__ import serve
    from tickerhub_poller.settings import PollerSettings
    from tickerhub_poller.sources.yfinance import YFinanceSource

    settings = load_settings(PollerSettings, "poller")
    configure_logging(settings.log_level, settings.log_format)
    with tempfile.TemporaryDirectory() as cache, fake_yahoo(cache) as yahoo:
        if os.environ.get("FAKE_YAHOO_QUOTES", "recorded") == "live":
            yahoo.handle("quote", live_quotes)
        source = YFinanceSource(
            max_batch=settings.batch_size, timeout=settings.request_timeout, session=yahoo.session
        )
        asyncio.run(serve(settings, source))
    sys.exit(0)


if __name__ == "__main__":
    main()
