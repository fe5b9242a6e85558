"""The wire format: orjson bytes, one shape per message type.

These functions are pure (bytes in, bytes out) so producers, the api and the
benchmark share one definition of every message, and tests can check them
without a socket.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from tickerhub_core.models import NewsItem, Quote

dumps = orjson.dumps


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)


def now_ms() -> int:
    """Wall-clock publish time in epoch milliseconds (what ``ts`` carries)."""
    return time.time_ns() // 1_000_000


def diff_message(seq: int, data: Mapping[str, Mapping[str, Any]], ts: int | None = None) -> bytes:
    """``{"type":"diff","seq":S,"ts":T,"data":{SYM:{changed fields}}}``.

    Producers publish these bytes; the api decodes them (it needs the fields
    for its mirror and the per-watchlist subsets) and encodes each distinct
    client frame once with this same function, shared by every client that
    gets it.
    """
    return dumps({"type": "diff", "seq": seq, "ts": now_ms() if ts is None else ts, "data": data})


def reset_message(seq: int, ts: int | None = None) -> bytes:
    """Tells readers the snapshot was rewritten wholesale: reload it."""
    return dumps({"type": "reset", "seq": seq, "ts": now_ms() if ts is None else ts})


def snapshot_message(seq: int, data: Mapping[str, Quote], epoch: str | None = None) -> bytes:
    if epoch is None:
        return dumps({"type": "snapshot", "seq": seq, "data": data})
    return dumps({"type": "snapshot", "seq": seq, "epoch": epoch, "data": data})


def news_message(items: list[NewsItem], kind: str = "news") -> bytes:
    return dumps({"type": kind, "data": items})


def error_message(code: str, message: str, **extra: Any) -> bytes:
    return dumps({"type": "error", "code": code, "message": message, **extra})
