"""The scenario table: A-F, R, M, S, in quick and ``--full`` sizes.

F (issue 14): the stream's latency at A's load, measured twice in one run, without
and with a flood of ``GET /tickers`` from another process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A saturation step passes when p99 stays under this (and every client converges).
P99_SATURATION_MS = 100.0


@dataclass
class Scenario:
    name: str
    title: str
    clients: int
    symbols: int
    rate: float
    duration: float
    watch: int | None = None  # K symbols per client, None = all
    stall_fraction: float = 0.0
    stall_seconds: float = 0.0
    stall_at: float = 2.0
    saturation: bool = False
    processes: int = 1
    start_rate: float = 100.0
    max_rate: float = 20000.0
    bisect: int = 1
    rest_flood: int = 0  # concurrent GET /tickers loops beside the stream (scenario F)
    client_rate: float | None = None  # clients connect with ?max_rate= (scenario M)
    storm: bool = False  # reconnect storm (scenario R): kill + restart the api, twice
    freshness: bool = False  # scenario S: Yahoo's push stream vs polling (freshness.py)


def scenarios(full: bool, only: Sequence[str] | None = None) -> list[Scenario]:
    if full:
        n_a, n_b, dur, step = 1000, 10000, 20.0, 5.0
    else:
        n_a, n_b, dur, step = 200, 1000, 8.0, 3.0
    if only is None:
        only = "ABCDE"  # R, M (issue 9) and S (issue 8) only when asked: no baseline
    found = [
        Scenario("A", "broadcast", n_a, 50, 100, dur),
        Scenario("B", "watchlists", n_b, 500, 500, dur, watch=10),
        Scenario("C", "slow consumers", n_a, 50, 100, max(dur, 14.0), stall_fraction=0.1,
                 stall_seconds=10.0),
        Scenario("D", "saturation", n_a, 50, 0, step, saturation=True, bisect=2 if full else 1),
        Scenario("E", "scale out (2 procs)", n_a, 50, 0, step, saturation=True, processes=2,
                 bisect=2 if full else 1),
        Scenario("F", "REST flood beside the stream", n_a, 50, 100, dur,
                 rest_flood=64 if full else 16),
        # Issue 9. R: the api killed and restarted while 50 upd/s go on (duration = the
        # outage before the restart begins); every client reconnects at once, with
        # resume, then again without. What resume saves is the share of the watched
        # quotes that did not change meanwhile: at 500 upd/s over 500 symbols every
        # quote changes within the few seconds an api restart takes, and resume then
        # sends as much as a full snapshot (the table shows that share).
        Scenario("R", "reconnect storm", n_b, 500, 50, 1.0, watch=10, storm=True),
        # M: A's load, every client at max_rate 1.
        Scenario("M", "max_rate 1 (A's load)", n_a, 50, 100, dur, client_rate=1.0),
        # Issue 8. S: the real poller streaming 1,000 ticks/s over 500 symbols from the
        # fake Yahoo streamer, each client watching 10 of them (B's watchlists); then
        # poll-only. Every client watching every symbol would be 1,000 x 1,000 = 1M
        # symbol updates/s, more than the load generator itself can read on 2 cores.
        Scenario("S", "freshness: stream vs poll-only", n_a, 500, 1000, dur, watch=10,
                 freshness=True),
    ]  # fmt: skip
    if only:
        found = [s for s in found if s.name in only]
    return found
