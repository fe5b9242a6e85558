"""What a quote source is, and the ways it can fail.

A source answers for a batch of symbols at once: the poller coalesces the
per-ticker tasks' requests into one call per batch (see ``batcher.py``), because
Yahoo answers a list of symbols in one HTTP request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tickerhub_core.models import NewsItem, Quote


class SourceError(Exception):
    """A source failed. Subclasses say how, which decides the backoff."""


class RateLimitedError(SourceError):
    """The upstream asked us to slow down (HTTP 429 / YFRateLimitError)."""


class SourceUnavailableError(SourceError):
    """Timeout, connection error or 5xx: try again later."""


class SourceTimeoutError(SourceUnavailableError):
    """No answer within the request timeout (handled as unavailable; counted apart)."""


class MalformedResponseError(SourceError):
    """The upstream answered with something we cannot parse."""


class NoDataError(SourceError):
    """The upstream knows nothing (or no price) for this symbol: delisted or mistyped."""


class QuoteSource(Protocol):
    """A batch quote and per-symbol news provider.

    ``fetch_quotes`` raises a :class:`SourceError` when the whole batch failed;
    a symbol the upstream has no price for maps to a :class:`NoDataError`
    instance in the result. Quotes carry the data fields of
    :data:`tickerhub_core.models.QUOTE_DATA_FIELDS` plus ``symbol``; the hub
    adds ``seq`` and ``stale``.
    """

    name: str
    max_batch: int  # most symbols one fetch_quotes call may ask for

    async def fetch_quotes(self, symbols: Sequence[str]) -> dict[str, Quote | SourceError]: ...

    async def fetch_news(self, symbol: str, count: int) -> list[NewsItem]: ...

    async def aclose(self) -> None: ...
