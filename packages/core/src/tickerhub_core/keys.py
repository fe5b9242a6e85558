"""Redis key and channel names, in one place.

A deployment may share one Redis between several hubs (or with other apps), so
every name takes a configurable prefix. With the default empty prefix the names
are exactly the ones documented in ``docs/protocol.md``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str = ""

    @property
    def prices(self) -> str:
        """HASH: symbol -> quote JSON (the full snapshot)."""
        return f"{self.prefix}prices"

    @property
    def prices_seq(self) -> str:
        """STRING: sequence number of the last diff applied to :attr:`prices`."""
        return f"{self.prefix}prices:seq"

    @property
    def producer_heartbeat(self) -> str:
        """STRING with a TTL: epoch ms of the producer's last confirmation that Redis is current."""
        return f"{self.prefix}prices:heartbeat"

    @property
    def prices_channel(self) -> str:
        """Pub/sub channel carrying ``diff`` and ``reset`` messages."""
        return f"{self.prefix}price-diffs"

    def bars(self, symbol: str) -> str:
        """ZSET: one symbol's 1-minute bar JSON scored by the minute's start (epoch seconds)."""
        return f"{self.prefix}bars:{symbol}"

    @property
    def bars_seq(self) -> str:
        """STRING: sequence number of the last ``bars`` message."""
        return f"{self.prefix}bars:seq"

    @property
    def bars_channel(self) -> str:
        """Pub/sub channel carrying ``bars`` messages."""
        return f"{self.prefix}price-bars"

    @property
    def news(self) -> str:
        """ZSET: news id scored by publish time (epoch seconds)."""
        return f"{self.prefix}news"

    @property
    def news_items(self) -> str:
        """HASH: news id -> news item JSON."""
        return f"{self.prefix}news:items"

    @property
    def news_channel(self) -> str:
        """Pub/sub channel carrying ``news`` messages with new items only."""
        return f"{self.prefix}news-updates"
