"""yfinance's timezone / cookie / ISIN caches live in memory once a client exists.

yfinance keeps them in SQLite files, one connection per thread, each switching
the file to WAL as it opens; worker threads opening a fresh file at once failed
with ``sqlite3.OperationalError: database is locked`` (a history request
answered 502, seen in CI as ``test_concurrent_fetches_beyond_the_cap_fail_fast``).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tickerhub_testkit.yahoo import fake_yahoo
from tickerhub_yahoo.client import MemoryCache, MemoryCookieCache, YahooClient

START = datetime(2025, 8, 12, tzinfo=UTC)
END = datetime(2025, 8, 26, tzinfo=UTC)


def test_history_writes_no_cache_file_and_remembers_the_timezone(tmp_path: Path) -> None:
    cache_dir = tmp_path / "yfinance-cache"
    with fake_yahoo(cache_dir, known={"AAPL"}) as yahoo:
        client = YahooClient(timeout=3.0, session=yahoo.session)
        frame = client.history("AAPL", START, END, "1d")
        assert len(frame) == 10

        from yfinance import cache as yf_cache

        assert yf_cache.get_tz_cache().lookup("AAPL") == "America/New_York"
        assert list(cache_dir.iterdir()) == []  # no tkr-tz.db, no cookies.db

        lookups = sum(1 for r in yahoo.requests if r.route == "chart" and "range" in r.params)
        client.history("AAPL", START, END + timedelta(days=1), "1d")
        again = sum(1 for r in yahoo.requests if r.route == "chart" and "range" in r.params)
        assert (lookups, again) == (1, 1)  # the timezone came from the memory cache


def test_concurrent_threads_store_and_find_their_keys() -> None:
    cache = MemoryCache()
    threads_n, keys_n = 16, 200
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        barrier.wait()
        try:
            for k in range(keys_n):
                cache.store(f"{t}:{k}", f"v{k}")
                assert cache.lookup(f"{t}:{k}") == f"v{k}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.lookup(f"{threads_n - 1}:{keys_n - 1}") == f"v{keys_n - 1}"
    cache.store("0:0", None)  # yfinance's delete
    assert cache.lookup("0:0") is None


def test_cookie_cache_answers_yfinance_shape_with_a_copy() -> None:
    cache = MemoryCookieCache()
    assert cache.lookup("curlCffi") is None
    jar = {".yahoo.com": {"/": {"A3": "cookie-value"}}}
    cache.store("curlCffi", jar)
    jar[".yahoo.com"]["/"]["A3"] = "changed after storing"
    found = cache.lookup("curlCffi")
    assert found["cookie"] == {".yahoo.com": {"/": {"A3": "cookie-value"}}}
    assert timedelta(0) <= found["age"] < timedelta(minutes=1)
    found["cookie"].clear()
    assert cache.lookup("curlCffi")["cookie"] != {}
    cache.store("curlCffi", None)
    assert cache.lookup("curlCffi") is None
