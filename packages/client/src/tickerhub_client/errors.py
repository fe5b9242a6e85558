"""Exceptions. Recoverable trouble (a dropped connection, an api restart) is not an
exception: the client reconnects and yields a ``Reconnecting`` event."""

from __future__ import annotations


class TickerHubError(Exception):
    """Base class of this package's exceptions."""


class ProtocolError(TickerHubError, ValueError):
    """The server sent something docs/protocol.md does not allow (a server bug)."""


class ConnectionRejected(TickerHubError):
    """The server refused this client for a reason retrying cannot fix.

    Close code ``1008`` (invalid or missing API key, authentication timeout, persistent
    rate-limit abuse) or an HTTP refusal of the handshake (``403``: origin not allowed,
    ``401``/``404``). ``code`` is the close code or HTTP status, ``reason`` the server's text.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"refused by the server ({code}): {reason or 'no reason given'}")
        self.code = code
        self.reason = reason
