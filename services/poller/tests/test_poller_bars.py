"""1-minute bars from the real poller (simulated source) against a real redis-server.

The expected bars are computed here, by hand, from the quotes the poller published
on ``price-diffs`` (every poll of the simulated walk changes the volume, so every
sample the bar builder saw is one diff), and compared with what it stored and
published on ``price-bars``.
"""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest
import redis

from tickerhub_testkit.processes import poller_process
from tickerhub_testkit.wait import eventually_blocking

pytestmark = pytest.mark.integration

TICKERS = ["AAPL", "MSFT"]


def epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def expected_bars(diffs: list[dict], symbol: str) -> dict[int, dict]:
    """OHLCV per minute from the published samples, the way docs/protocol.md defines it."""
    quote: dict = {}
    bars: dict[int, dict] = {}
    last_volume = None
    for diff in diffs:
        fields = diff["data"].get(symbol)
        if fields is None:
            continue
        quote.update(fields)
        t = epoch(quote["market_time"]) // 60 * 60
        price, volume = quote["price"], quote["volume"]
        rise = 0 if last_volume is None else max(0, volume - last_volume)
        last_volume = volume
        bar = bars.get(t)
        if bar is None:
            bars[t] = {"o": price, "h": price, "l": price, "c": price, "v": rise, "n": 1}
        else:
            bar.update(h=max(bar["h"], price), l=min(bar["l"], price), c=price)
            bar["v"] += rise
            bar["n"] += 1
    return bars


def stored(client: redis.Redis, symbol: str) -> dict[int, dict]:
    members: list[bytes] = client.zrange(f"bars:{symbol}", 0, -1)  # type: ignore[assignment]
    return {epoch(b["t"]): b for b in map(orjson.loads, members)}


def collect(pubsub: redis.client.PubSub, into: dict[str, list[dict]]) -> None:
    while (m := pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)) is not None:
        channel = m["channel"].decode()
        into.setdefault(channel, []).append(orjson.loads(m["data"]))


def test_bars_have_the_ohlcv_of_the_samples_and_survive_a_restart(redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    pubsub.subscribe("price-diffs", "price-bars")
    seen: dict[str, list[dict]] = {}
    with poller_process(redis_server.url, TICKERS, POLL_FREQ="0.3") as proc:
        proc.wait_for_output("polling", timeout=30)

        def some_bars() -> bool:
            collect(pubsub, seen)
            return len(seen.get("price-bars", [])) >= 3

        eventually_blocking(some_bars, "three bars messages", limit=30, detail=proc.output)
        assert proc.stop() == 0, proc.output()  # the shutdown writes every bar seen
    collect(pubsub, seen)

    for symbol in TICKERS:
        want = expected_bars(seen["price-diffs"], symbol)
        have = stored(client, symbol)
        assert want, "no samples"
        got = {t: {k: have[t][k] for k in "ohlcvn"} for t in have}
        assert got == want, symbol
        assert all(b["symbol"] == symbol for b in have.values())
    # Published bars: seq +1 per message, each bar's revisions rising, last = stored.
    messages = seen["price-bars"]
    assert [m["seq"] for m in messages] == list(
        range(messages[0]["seq"], messages[0]["seq"] + len(messages))
    )
    latest: dict[tuple[str, str], dict] = {}
    for message in messages:
        for bar in message["data"]:
            key = (bar["symbol"], bar["t"])
            assert bar["revision"] > latest.get(key, {"revision": 0})["revision"]
            latest[key] = bar
    assert latest == {(s, b["t"]): b for s in TICKERS for b in stored(client, s).values()}

    before = {s: stored(client, s) for s in TICKERS}
    with poller_process(redis_server.url, TICKERS, POLL_FREQ="0.3") as proc:
        proc.wait_for_output("loaded", timeout=30)

        def grown() -> bool:
            return all(
                sum(b["n"] for b in stored(client, s).values())
                > sum(b["n"] for b in before[s].values())
                for s in TICKERS
            )

        eventually_blocking(grown, "new samples after the restart", limit=30, detail=proc.output)
        assert proc.stop() == 0, proc.output()
    for symbol in TICKERS:
        after = stored(client, symbol)
        for t, bar in before[symbol].items():
            # Earlier minutes are kept; the minute open at the restart continues.
            assert after[t]["o"] == bar["o"]
            assert after[t]["n"] >= bar["n"]
            assert after[t]["revision"] > bar["revision"] or after[t] == bar
    pubsub.close()
    client.close()
