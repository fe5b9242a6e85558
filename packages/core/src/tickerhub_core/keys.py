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
    def prices_epoch(self) -> str:
        """STRING: opaque id of the snapshot's history, new on every reset (resumes check it)."""
        return f"{self.prefix}prices:epoch"

    @property
    def prices_fields(self) -> str:
        """HASH: symbol -> JSON ``{field: seq of the diff that last changed it}``, with
        ``@floor`` (complete for every diff after that seq) and ``@last`` (the last diff
        recorded). Lets a resume send only the fields that changed (docs/protocol.md)."""
        return f"{self.prefix}prices:fields"

    @property
    def producer_heartbeat(self) -> str:
        """STRING with a TTL: epoch ms of the producer's last confirmation that Redis is current."""
        return f"{self.prefix}prices:heartbeat"

    @property
    def poller_lease(self) -> str:
        """STRING with a TTL: the token of the poller that leads (publishes); only its
        holder renews or deletes it (``tickerhub_poller.lease``)."""
        return f"{self.prefix}poller:lease"

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

    def news_symbol(self, symbol: str) -> str:
        """ZSET: ids of the kept news items about ``symbol``, scored like :attr:`news`
        (the per-symbol index ``ADD_NEWS_LUA`` maintains; names derived from :attr:`news`)."""
        return f"{self.news}:sym:{symbol}"

    @property
    def news_indexed(self) -> str:
        """STRING: present once ``ADD_NEWS_LUA`` has indexed every kept item per symbol."""
        return f"{self.news}:indexed"

    @property
    def news_channel(self) -> str:
        """Pub/sub channel carrying ``news`` messages with new items only."""
        return f"{self.prefix}news-updates"

    @property
    def source_status(self) -> str:
        """STRING with a TTL: the poller's source status document (JSON; docs/protocol.md),
        rewritten every few seconds; gone means no live poller reports it."""
        return f"{self.prefix}source:status"

    @property
    def yahoo_rate_limited(self) -> str:
        """STRING with a TTL: set while Yahoo rate-limits this host (by the poller or the
        api, whichever got the 429); the TTL is how long to hold off."""
        return f"{self.prefix}yahoo:rate-limited"

    @property
    def interest(self) -> str:
        """ZSET: symbols on demand -> epoch ms a client last asked for or watched them."""
        return f"{self.prefix}interest"

    @property
    def interest_unknown(self) -> str:
        """ZSET: symbols the source does not know -> epoch ms until which that holds."""
        return f"{self.prefix}interest:unknown"

    @property
    def interest_config(self) -> str:
        """HASH: the on-demand poller's ``room`` (symbols it takes on demand) and ``ttl`` (ms)."""
        return f"{self.prefix}interest:config"
