"""A REST flood in its own process: ``python -m tickerhub_bench.flood URL CONCURRENCY SECONDS``.

``CONCURRENCY`` loops GET ``URL`` back to back for ``SECONDS``; prints
``{"requests": n, "errors": n, "statuses": {...}}`` as JSON. Its own process,
so the flood's client CPU is not taken from the injector or the stream clients.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import httpx
import orjson


async def flood(url: str, concurrency: int, seconds: float) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    errors = 0
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def loop() -> None:
            nonlocal errors
            while time.monotonic() < end:
                try:
                    statuses[(await client.get(url)).status_code] += 1
                except httpx.HTTPError:
                    errors += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return {
        "requests": sum(statuses.values()),
        "errors": errors,
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def main() -> None:
    url, concurrency, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sys.stdout.write(orjson.dumps(asyncio.run(flood(url, concurrency, seconds))).decode() + "\n")


if __name__ == "__main__":
    main()
