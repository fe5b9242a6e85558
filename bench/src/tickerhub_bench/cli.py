"""``tickerhub-bench``: run the fan-out scenarios and print the table (or JSON)."""

from __future__ import annotations

import argparse
import shlex
import sys

import orjson

from tickerhub_bench.client import raise_fd_limit
from tickerhub_bench.options import Options
from tickerhub_bench.report import table
from tickerhub_bench.runner import Runner


def parse(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        prog="tickerhub-bench",
        description="WebSocket fan-out benchmark: our api against a naive baseline, "
        "scenarios A-E (issue 4), F (REST flood beside the stream, issue 14).",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="the issue's sizes (1,000 / 10,000 clients); default is a quick run",
    )
    p.add_argument(
        "--scenarios",
        default="ABCDEFS",
        help="which scenarios, e.g. AB (default ABCDEFS); R = reconnect storm, M = max_rate "
        "(issue 9); S = freshness, Yahoo's push stream vs poll-only (issue 8)",
    )
    p.add_argument(
        "--targets",
        default="ours,baseline",
        help="comma list of ours, baseline, nometrics (our api with METRICS=false, to "
        "measure what metrics cost; e.g. --scenarios A --targets ours,nometrics); "
        "default ours,baseline",
    )
    p.add_argument("--workers", type=int, default=2, help="client worker processes (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--json-out", help="also write the JSON results to this file")
    p.add_argument("--api-cmd", help="command that starts the api (default: the `api` script)")
    p.add_argument("--api-url", help="use a running api (http://host:port) instead of starting one")
    p.add_argument("--api-pid", type=int, help="pid of the running api, for CPU/RSS")
    p.add_argument("--baseline-url", help="use a running baseline instead of starting one")
    p.add_argument("--redis-url", help="use this Redis (it is FLUSHED) instead of starting one")
    p.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="py-spy record the api for this long during A and B, and from the moment it is "
        "ready again in R's resume storm",
    )
    p.add_argument("--connect-concurrency", type=int, default=200)
    p.add_argument("--clients", type=int, help="override every scenario's client count (smoke)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    a = p.parse_args(argv)  # fmt: skip
    return Options(
        targets=[t.strip() for t in a.targets.split(",") if t.strip()],
        workers=max(1, a.workers),
        full=a.full,
        only=list(a.scenarios.upper()),
        api_cmd=shlex.split(a.api_cmd) if a.api_cmd else None,
        redis_url=a.redis_url,
        api_url=a.api_url,
        api_pid=a.api_pid,
        baseline_url=a.baseline_url,
        profile_seconds=a.profile,
        connect_concurrency=a.connect_concurrency,
        clients=a.clients,
        quiet=a.quiet,
        json=a.json,
        json_out=a.json_out,
    )


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    raise_fd_limit()
    results = Runner(opts).run()
    text = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    if opts.json_out:
        with open(opts.json_out, "wb") as f:
            f.write(text)
    if opts.json:
        sys.stdout.buffer.write(text + b"\n")
    else:
        print(table(results))


if __name__ == "__main__":
    main()
