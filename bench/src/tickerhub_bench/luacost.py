"""Redis's cost of ``PUBLISH_DIFF_LUA`` with and without the field record, side by side.

``python -m tickerhub_bench.luacost``: a private redis-server, 500 bench quotes,
3,000 diffs of 1, 5 and 50 symbols (the bench's own ticks) through the script
with three KEYS (no ``prices:fields``) and with four; Redis's own
``usec_per_call`` for ``evalsha`` from ``INFO commandstats``, so the client's
round trips do not count.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from redis.asyncio import Redis

from tickerhub_bench.harness import initial_quote, make_symbols, next_change
from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_core.store import PUBLISH_DIFF_LUA
from tickerhub_testkit.redis_server import RedisServer

DIFFS = 3000
SYMBOLS = 500


async def usec_per_call(redis: Redis, keys: RedisKeys, record: bool, per_diff: int) -> float:
    script = redis.register_script(PUBLISH_DIFF_LUA)
    names = [keys.prices, keys.prices_seq, keys.prices_epoch]
    if record:
        names.append(keys.prices_fields)
    rng = random.Random(1)
    symbols = make_symbols(SYMBOLS)
    quotes = {s: initial_quote(s, i) for i, s in enumerate(symbols)}
    seq = 0
    await redis.config_resetstat()
    for i in range(DIFFS):
        data: dict[str, dict[str, Any]] = {}
        for j in range(per_diff):
            symbol = symbols[(i * per_diff + j) % SYMBOLS]
            change = next_change(quotes[symbol], rng)
            quotes[symbol].update(change, seq=seq + 1)
            data[symbol] = {"symbol": symbol, "seq": seq + 1, **change}
        args: list[Any] = [keys.prices_channel, seq, wire.diff_message(seq + 1, data)]
        for symbol in data:
            args += (symbol, wire.dumps(quotes[symbol]))
        _, seq = await script(keys=names, args=args)
    stats = await redis.info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


async def main() -> None:
    server = RedisServer().start()
    redis = Redis.from_url(server.url)
    try:
        for per_diff in (1, 5, 50):
            without = await usec_per_call(redis, RedisKeys(f"a{per_diff}:"), False, per_diff)
            with_ = await usec_per_call(redis, RedisKeys(f"b{per_diff}:"), True, per_diff)
            print(
                f"{per_diff:>2} symbols/diff: {without:6.1f} us without the field record, "
                f"{with_:6.1f} us with it ({with_ / without:.2f}x, "
                f"+{(with_ - without) / per_diff:.1f} us per symbol)"
            )
    finally:
        await redis.aclose()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
