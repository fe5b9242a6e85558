"""Per-connection limits in one place: what one WebSocket client may hold and say.

Admission (API keys, origins, the process's connection ceiling) is the route's
business (``routes/ws.py``); everything here applies to a connection once it
is open, and is read by the hub (queue bound, symbols, send timeout) and the
route's reader (idle timeout, message rate).
"""

from __future__ import annotations

from dataclasses import dataclass

from tickerhub_api.limits import MessageLimiter
from tickerhub_api.settings import ApiSettings


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    max_frames: int  # replies and snapshots queued for a client that is not reading
    max_symbols: int  # symbols one watchlist may hold
    send_timeout: float  # seconds a send may stay blocked before a 4008 close
    auth_timeout: float  # seconds to wait for a first {"auth": ...} message
    idle_timeout: float  # seconds without a client message before a 4000 close; 0: none
    rate: float  # client messages per second; 0: no limit
    burst: int
    strikes: int
    # Watched symbols no producer has published ("pending"): per connection, and
    # distinct ones per stream and process (docs/operations.md gives the worst case).
    max_unknown: int = 50
    max_pending: int = 10_000

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> ConnectionPolicy:
        return cls(
            max_frames=settings.ws_send_queue_bound,
            max_symbols=settings.ws_max_symbols,
            send_timeout=settings.ws_send_timeout,
            auth_timeout=settings.ws_auth_timeout,
            idle_timeout=settings.ws_idle_timeout,
            rate=settings.ws_max_messages_per_second,
            burst=settings.ws_message_burst,
            strikes=settings.ws_rate_limit_strikes,
            max_unknown=settings.ws_max_unknown_symbols,
            max_pending=settings.ws_max_pending_symbols,
        )

    def limiter(self) -> MessageLimiter | None:
        """A fresh rate limiter for one connection, or ``None`` without a rate limit."""
        return MessageLimiter(self.rate, self.burst, self.strikes) if self.rate > 0 else None
