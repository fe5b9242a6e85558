"""deploy/grafana/tickerhub.json and deploy/prometheus/*.yml query only metrics the real
api and poller expose: every ``tickerhub_*`` name in them is in a scrape of the two
subprocesses after some traffic."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml
from redis.asyncio import Redis

from tickerhub_testkit.metrics import Scrape, scrape
from tickerhub_testkit.net import free_port, wait_for_port
from tickerhub_testkit.processes import Procs, poller_process, start_api
from tickerhub_testkit.producer import Producer
from tickerhub_testkit.ws import recv

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "tickerhub.json"
PROMETHEUS = ROOT / "deploy" / "prometheus"
NAME = re.compile(r"\btickerhub_[a-z0-9_]+\b")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def names(exprs: list[str]) -> set[str]:
    return {n for e in exprs for n in NAME.findall(e)}


def exposed(name: str, scrapes: list[Scrape]) -> bool:
    """A sample of that name, or (for a labelled family with no sample yet) its family."""
    base = name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            break
    return any(name in s.names or base in s.families for s in scrapes)


def test_files_are_well_formed() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"tickerhub-api", "tickerhub-poller"}
    # The dashboard's job variables default to the example config's job names.
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    assert variables["api_job"]["query"] in jobs
    assert variables["poller_job"]["query"] in jobs
    assert alert_exprs()


@pytest.mark.integration
async def test_every_queried_metric_exists_in_a_real_scrape(
    redis_server: Any, procs: Procs
) -> None:
    client = Redis.from_url(redis_server.url)
    await Producer(client).publish({"AAPL": {"price": 1.0}})
    await client.aclose()
    api = start_api(procs, redis_server.url)
    port = free_port()
    procs(poller_process(redis_server.url, ["AAPL", "MSFT"], METRICS_PORT=str(port)))
    wait_for_port(port, timeout=30)
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await recv(ws)
        await ws.send("{")
        await recv(ws)
    async with httpx.AsyncClient() as http:
        await http.get(f"{api.http}/tickers")
    await asyncio.sleep(1)  # the poller publishes, the api fans out
    scrapes = [
        await asyncio.to_thread(scrape, f"{api.http}/metrics"),
        await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics"),
    ]
    queried = names(dashboard_exprs()) | names(alert_exprs())
    assert len(queried) > 20
    missing = sorted(n for n in queried if not exposed(n, scrapes))
    assert not missing, f"queried but not exposed: {missing}"
