"""Pure diffing of quotes: what changed, field by field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# ``seq`` is the hub's bookkeeping, not data: it never makes a quote "changed".
_IGNORED = frozenset({"seq"})


def diff_quote(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Fields of ``new`` whose value differs from ``old`` (all of them when ``old`` is None)."""
    if old is None:
        return {k: v for k, v in new.items() if k not in _IGNORED}
    return {k: v for k, v in new.items() if k not in _IGNORED and (k not in old or old[k] != v)}
