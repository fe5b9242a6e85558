"""Reset yfinance's process-wide state between tests (private names: 1.7, see client.py).

Kept beside the adapter because it reaches into the same internals: the
``YfData`` singleton (``SingletonMeta._instances``), ``YfData.cache_get``, the
on-disk timezone / cookie / ISIN cache managers and ``YfConfig``. Test code only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tickerhub_yahoo.client import load


def reset_yfinance(cache_dir: str | Path) -> None:
    """Forget yfinance's singleton session, cookie, crumb, caches and config changes."""
    yf = load()
    from yfinance import cache as yf_cache
    from yfinance.config import YfConfig
    from yfinance.data import SingletonMeta, YfData

    with SingletonMeta._lock:
        SingletonMeta._instances.pop(YfData, None)
    YfData.cache_get.cache_clear()
    # set_tz_cache_location alone does not move caches that were already opened:
    # the cache objects keep their database handle, so drop them too.
    yf.set_tz_cache_location(str(cache_dir))
    yf_cache._TzCacheManager._tz_cache = None
    yf_cache._CookieCacheManager._Cookie_cache = None
    yf_cache._ISINCacheManager._isin_cache = None
    YfConfig._initialised = False  # defaults again (hide_exceptions, retries, proxy)


@contextmanager
def isolated_yfinance(cache_dir: str | Path) -> Iterator[None]:
    """Run a block with fresh yfinance state and caches under ``cache_dir``; reset after.

    Sets ``YF_DISABLE_CURL_CFFI=1`` (effective only if yfinance is imported after
    this): with a ``requests`` session, the HTTP errors yfinance re-raises are
    ``requests``' classes.
    """
    os.environ["YF_DISABLE_CURL_CFFI"] = "1"
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    reset_yfinance(cache_dir)
    try:
        yield
    finally:
        reset_yfinance(cache_dir)
