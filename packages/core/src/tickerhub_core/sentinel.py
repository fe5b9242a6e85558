"""Redis Sentinel settings: parse and check them, and what ``REDIS_URL`` still gives.

With ``REDIS_SENTINELS`` set, the sentinels say where the primary is; ``REDIS_URL``
keeps only what a sentinel cannot tell: the username/password, the database
number and TLS (``rediss://`` and its ``ssl_*`` query options). Its host and port
are ignored. A ``unix://`` URL cannot be combined with sentinels (they answer
with a host and port) and is refused.

The sentinels themselves are reached without TLS, with ``REDIS_SENTINEL_PASSWORD``
when they have a ``requirepass`` of their own.

Pure functions, no I/O: the client is built by :mod:`tickerhub_core.redis_client`.
"""

from __future__ import annotations

import re
from typing import Any

from redis.asyncio.connection import SSLConnection, parse_url

# What Sentinel accepts as a master name in practice (no spaces: it is one word
# of `SENTINEL MONITOR <name> ...`).
_MASTER_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


def parse_address(item: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> ``(host, port)``; ``ValueError`` says why not."""
    host, sep, port_text = item.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"{item!r} is not host:port (e.g. sentinel-1:26379)")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{item!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def check_sentinel_settings(sentinels: list[str], redis_url: str | None) -> None:
    """Refuse a bad ``REDIS_SENTINELS`` (every item host:port, no ``unix://`` REDIS_URL)."""
    for item in sentinels:
        parse_address(item)
    if sentinels and redis_url is not None and redis_url.startswith("unix://"):
        raise ValueError(
            "cannot be combined with a unix:// REDIS_URL (sentinels name a host and port)"
        )


def check_master_name(name: str, sentinels: list[str]) -> str:
    """``REDIS_SENTINEL_MASTER`` is required with sentinels and meaningless without."""
    if sentinels and not name:
        raise ValueError("required when REDIS_SENTINELS is set (the name the sentinels monitor)")
    if name and not sentinels:
        raise ValueError("set, but REDIS_SENTINELS is empty (set both, or neither)")
    if name and not _MASTER_RE.match(name):
        raise ValueError(
            "must be one word of letters, digits and _ . : - (at most 64), "
            "as in the sentinels' 'sentinel monitor <name>'"
        )
    return name


def url_connection_kwargs(redis_url: str) -> dict[str, Any]:
    """What ``REDIS_URL`` adds to connections to the primary the sentinels name:
    credentials, db, TLS and the URL's query options; never host or port."""
    kwargs: dict[str, Any] = dict(parse_url(redis_url))
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    # Sentinel's pool picks its own connection class; TLS is asked for with ssl=True.
    if kwargs.pop("connection_class", None) is SSLConnection:
        kwargs["ssl"] = True
    return kwargs
