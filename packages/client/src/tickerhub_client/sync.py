"""Iterate a client from synchronous code (scripts, notebooks without a loop running).

The client's event loop runs only while the caller waits for the next event, so keep
the loop body short: a body that blocks longer than the WebSocket ping timeout (20 s)
gets the connection dropped, and the client reconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator

from tickerhub_client.client import NewsClient, PricesClient
from tickerhub_client.events import Event


def iterate(client: PricesClient | NewsClient) -> Generator[Event, None, None]:
    """``for event in iterate(client)``: the events of ``async for event in client``.

    Closing the generator (leaving ``with contextlib.closing(...)``, or garbage
    collection after a ``break``) closes the client.
    """
    loop = asyncio.new_event_loop()
    events = aiter(client)
    try:
        while True:
            try:
                yield loop.run_until_complete(anext(events))
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(client.close())
        # aiter() is typed AsyncIterator; the clients' __aiter__ returns an async generator
        loop.run_until_complete(events.aclose())  # type: ignore[attr-defined]
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
