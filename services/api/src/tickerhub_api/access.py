"""Who may use the api: API keys, the WebSocket Origin allowlist, CORS, and keeping keys
out of the logs.

Keys are compared in constant time against every configured key, and never
logged: a log line names a key by :func:`key_id` (a short SHA-256 prefix) at most.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

# REST paths that stay open with API keys on: orchestrators' probes, Prometheus' scrape
# (counts only: no symbol, key or client address; METRICS=false removes it) and the
# API's own description, both renderings alike (the OpenAPI schema is public; calls made
# from /docs need the key: its Authorize button takes one, see add_key_security).
# The board page and its assets are open too: the page asks for the key itself and
# sends it as the WebSocket's first message (routes/board.py).
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
BOARD_ASSETS = ("/board/static/board.css", "/board/static/board.js")
OPEN_PATHS = PROBE_PATHS | {
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/",
    "/board",
    *BOARD_ASSETS,
}

# How the OpenAPI document describes the two ways to send a key.
SECURITY_SCHEMES = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}

API_KEY_HEADER = "x-api-key"
API_KEY_QUERY = "api_key"

_KEY_RE = re.compile(r"^[\x21-\x7e]{16,256}$")
_ORIGIN_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://[^/\s?#]+|null)$")


def check_key_syntax(key: str) -> None:
    """Raise ValueError (without echoing the key) unless it fits in a header and is long."""
    if not _KEY_RE.match(key):
        raise ValueError(
            "each key must be 16 to 256 printable ASCII characters without spaces or commas"
        )


def normalize_origin(origin: str) -> str:
    """``https://App.Example.com/`` -> ``https://app.example.com``; ValueError if not an origin."""
    value = origin.strip().rstrip("/").lower()
    if not _ORIGIN_RE.match(value):
        raise ValueError(f"not an origin (scheme://host[:port]): {origin[:80]!r}")
    return value


def key_id(key: str) -> str:
    """What logs may show of a key: 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class KeyCheck:
    """The configured API keys; an empty set means the api is open."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(k.encode() for k in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def valid(self, candidate: str | None) -> bool:
        """Constant time in the candidate's value: every key is compared, always."""
        if candidate is None or not self._keys:
            return False
        given = candidate.encode("utf-8", "surrogateescape")
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(given, key)
        return found


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; ``None`` when neither is there."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get(API_KEY_HEADER)
    return key.strip() if key else None


def add_key_security(schema: dict[str, Any]) -> dict[str, Any]:
    """With API keys on: the OpenAPI document declares the key schemes (so /docs can
    send a key) and that every operation needs one, except the probes."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    schema["security"] = [{name: []} for name in SECURITY_SCHEMES]
    for path in PROBE_PATHS:
        for operation in schema.get("paths", {}).get(path, {}).values():
            operation["security"] = []
    return schema


class OriginCheck:
    """The WebSocket Origin allowlist (protection against cross-site WebSocket hijacking).

    Empty or ``*``: every origin. Otherwise a browser's ``Origin`` must be listed;
    a request without ``Origin`` (not a browser: curl, Python, servers) is allowed.
    """

    def __init__(self, allowed: Iterable[str]) -> None:
        listed = {normalize_origin(o) if o != "*" else o for o in allowed}
        self.allow_all = not listed or "*" in listed
        self._allowed = frozenset(listed)

    def allows(self, origin: str | None) -> bool:
        if origin is None or self.allow_all:
            return True
        try:
            return normalize_origin(origin) in self._allowed
        except ValueError:
            return False


def cors_options(cors_origins: Iterable[str], keys_enabled: bool) -> dict[str, Any] | None:
    """Arguments for Starlette's CORSMiddleware, or ``None`` for no CORS (same origin only).

    Listed origins are used as they are. Without a list: ``*`` (no credentials) while
    the api is open, no CORS at all once API keys are on. ``*`` never comes with keys
    (the settings refuse that combination).
    """
    origins = [o if o == "*" else normalize_origin(o) for o in cors_origins]
    if not origins:
        if keys_enabled:
            return None
        origins = ["*"]
    return {
        "allow_origins": origins,
        "allow_methods": ["GET", "HEAD", "OPTIONS"],
        "allow_headers": ["Authorization", "X-API-Key", "Content-Type"],
        "expose_headers": ["X-TickerHub-Seq", "X-TickerHub-Epoch", "X-TickerHub-Age"],
        "allow_credentials": False,
        "max_age": 600,
    }


class ApiKeyMiddleware:
    """401 for HTTP requests without a valid key, except :data:`OPEN_PATHS`.

    WebSockets pass through: their route checks the key (it must accept first to
    send a close code a browser can see).
    """

    def __init__(self, app: ASGIApp, keys: KeyCheck) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = key_from_headers(headers)
        if self.keys.valid(given):
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer realm="tickerhub"'
        detail = "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>"
        if given is not None:
            challenge += ', error="invalid_token"'
            detail = "invalid API key"
        body = ('{"detail": "' + detail + '"}').encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# What may carry a key in a log line: a query parameter (uvicorn's access log shows
# paths), a request header or a first {"auth": ...} message (uvicorn's DEBUG log of the
# WebSocket handshake and frames).
_SECRET_RES = (
    re.compile(r"((?:^|[?&;])api(?:_|%5f)key=)[^&;\s\"']*", re.IGNORECASE),
    re.compile(r"((?:authorization|x-api-key)\s*[:=]\s*)[^\r\n]+", re.IGNORECASE),
    re.compile(r"(\\?[\"']auth\\?[\"']\s*:\s*)[^,}\s]+", re.IGNORECASE),
)
_HINTS = ("key", "auth")


def redact(text: str) -> str:
    """Replace every key a log line could show with ``***``."""
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        return text
    for pattern in _SECRET_RES:
        text = pattern.sub(r"\1***", text)
    return text


class RedactApiKeys(logging.Filter):
    """Formats each record and strips keys from it (see :func:`redact`).

    When redacting each argument alone gives a clean message, the arguments are kept
    (redacted): a JSON log (``LOG_FORMAT=json``) still gets the access log's fields.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad log call: let the handler report it, as it would
            return True
        clean = redact(message)
        if clean == message:
            return True
        args = record.args
        if isinstance(args, tuple) and args:
            scrubbed = tuple(redact(a) if isinstance(a, str) else a for a in args)
            try:
                rebuilt = str(record.msg) % scrubbed
            except (TypeError, ValueError):
                rebuilt = None
            if rebuilt is not None and redact(rebuilt) == rebuilt:
                record.args = scrubbed
                return True
        record.msg = clean
        record.args = ()
        return True


def install_log_redaction() -> None:
    """On every handler of the root logger and on uvicorn's loggers."""
    redaction = RedactApiKeys()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redaction)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(redaction)
