"""The one Yahoo Finance adapter of TickerHub (poller quotes and news, api history).

Modules: ``errors`` (the exception classifier: :func:`classify` -> :class:`Kind`),
``client`` (every yfinance call and private name; :func:`load` imports yfinance
once), ``testing`` (reset of yfinance's globals for tests). Importing this
package does not import yfinance or pandas.
"""

from tickerhub_yahoo.errors import Failure, Kind, YahooError, classify

__all__ = ["Failure", "Kind", "YahooError", "classify"]
