"""TickerHub's Python client: ``PricesClient`` / ``NewsClient`` (async, reconnecting) and
``QuoteView`` / ``NewsView`` (the merged view alone, no I/O)."""

from tickerhub_client.backoff import Backoff
from tickerhub_client.client import NewsClient, PricesClient, base_url, canonical_symbols
from tickerhub_client.errors import ConnectionRejected, ProtocolError, TickerHubError
from tickerhub_client.events import (
    Closed,
    Connected,
    Diff,
    Error,
    Event,
    Message,
    News,
    NewsSnapshot,
    Reconnecting,
    Snapshot,
    Unsubscribed,
)
from tickerhub_client.view import NewsView, QuoteView

__all__ = [
    "Backoff",
    "Closed",
    "Connected",
    "ConnectionRejected",
    "Diff",
    "Error",
    "Event",
    "Message",
    "News",
    "NewsClient",
    "NewsSnapshot",
    "NewsView",
    "PricesClient",
    "ProtocolError",
    "QuoteView",
    "Reconnecting",
    "Snapshot",
    "TickerHubError",
    "Unsubscribed",
    "base_url",
    "canonical_symbols",
]
