"""How many quote updates a second the poller publishes with the simulated source.

    uv run python scripts/poller_rate.py --tickers 2000 --poll-freq 0.2 --seconds 10

Starts its own redis-server, runs the real ``poller`` console script, counts
the symbol updates in the diffs a subscriber receives, and reports the poller's
CPU use. The source is the deterministic random walk, so every poll changes
every symbol: offered rate = tickers / poll_freq.
"""

from __future__ import annotations

import argparse
import time

import orjson
import psutil
import redis

from tickerhub_testkit.processes import ServiceProcess
from tickerhub_testkit.redis_server import RedisServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=2000)
    parser.add_argument("--poll-freq", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    server = RedisServer().start()
    tickers = ",".join(f"S{i:04d}" for i in range(args.tickers))
    env = {"REDIS_URL": server.url, "SOURCE": "simulated", "TICKERS": tickers,
           "POLL_FREQ": str(args.poll_freq), "NEWS_INTERVAL": "0", "LOG_LEVEL": "WARNING",
           "BATCH_SIZE": "500"}  # fmt: skip
    client = redis.Redis.from_url(server.url)
    pubsub = client.pubsub()
    pubsub.subscribe("price-diffs")
    poller = ServiceProcess("poller", env).start()
    try:
        proc = psutil.Process(poller.pid)
        while client.get("prices:seq") is None:  # warm-up: first full diff
            time.sleep(0.05)
        while pubsub.get_message(timeout=0.01):
            pass
        cpu0 = proc.cpu_times()
        start = time.monotonic()
        updates = diffs = 0
        while (elapsed := time.monotonic() - start) < args.seconds:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                diffs += 1
                updates += len(orjson.loads(message["data"])["data"])
        cpu1 = proc.cpu_times()
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed
        offered = args.tickers / args.poll_freq
        print(f"offered {offered:,.0f} updates/s; published {updates / elapsed:,.0f} updates/s "
              f"in {diffs / elapsed:,.1f} diffs/s; poller CPU {cpu:.0%} of one core")  # fmt: skip
    finally:
        poller.stop()
        pubsub.close()
        client.close()
        server.close()


if __name__ == "__main__":
    main()
