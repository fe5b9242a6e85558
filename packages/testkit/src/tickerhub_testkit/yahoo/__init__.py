"""An offline Yahoo Finance for tests: yfinance's own code runs, only the wire is fake.

Three jobs, three homes:

* :mod:`tickerhub_testkit.yahoo.bodies`: the recorded answers and variants built
  from them (provenance of every recording in its docstring);
* :mod:`tickerhub_testkit.yahoo.transport`: :class:`FakeYahoo`, a real
  ``requests.Session`` whose transport adapter routes by host and path to those
  answers, scriptable per route, counting every request;
* :mod:`tickerhub_yahoo.testing`: the reset of yfinance's process-wide state,
  kept beside the adapter whose internals it touches.
"""

from tickerhub_testkit.yahoo.bodies import (
    A3_COOKIE,
    CRUMB,
    chart_body,
    news_body,
    news_item,
    news_items,
    quote_body,
    quote_item,
    quote_item_without_price,
    recorded,
    will_be_right_back_html,
)
from tickerhub_testkit.yahoo.transport import ROUTES, FakeYahoo, Recorded, Reply, fake_yahoo
from tickerhub_yahoo.testing import isolated_yfinance, reset_yfinance

__all__ = [
    "A3_COOKIE",
    "CRUMB",
    "ROUTES",
    "FakeYahoo",
    "Recorded",
    "Reply",
    "chart_body",
    "fake_yahoo",
    "isolated_yfinance",
    "news_body",
    "news_item",
    "news_items",
    "quote_body",
    "quote_item",
    "quote_item_without_price",
    "recorded",
    "reset_yfinance",
    "will_be_right_back_html",
]
