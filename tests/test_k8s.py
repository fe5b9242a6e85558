"""The Kubernetes manifests (deploy/k8s), checked without a cluster.

The kustomize base is rendered (by a small renderer here: the base uses nothing but
``resources``; where ``kubectl`` is installed its own kustomize must agree), every
object is validated against the Kubernetes OpenAPI schemas bundled with the
``kubernetes-validate`` package (offline), and what the manifests say about the
services is checked against the services themselves: setting names, ports, probe
paths and commands, shutdown timings, and the memory the benchmark measured.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import websockets
import yaml
from pydantic_settings import BaseSettings

from tickerhub_api.__main__ import CLOSE_WEBSOCKETS_SECONDS, GRACEFUL_SHUTDOWN_SECONDS
from tickerhub_api.access import OPEN_PATHS, PROBE_PATHS
from tickerhub_api.keys_file import parse_keys
from tickerhub_api.routes.rest import router
from tickerhub_api.settings import ApiSettings
from tickerhub_core.settings import CommonSettings
from tickerhub_poller.__main__ import SHUTDOWN_TIMEOUT
from tickerhub_poller.healthcheck import MAX_AGE
from tickerhub_poller.settings import PollerSettings
from tickerhub_testkit.net import free_port
from tickerhub_testkit.processes import ApiProcess, Procs, ServiceProcess
from tickerhub_testkit.wait import eventually
from tickerhub_testkit.ws import recv

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "deploy" / "k8s"
MONITORING = BASE / "monitoring"
# The oldest Kubernetes the base must work on (autoscaling/v2, policy/v1 and the PDBs'
# unhealthyPodEvictionPolicy are all there), and the newest the package knows.
K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
SETTINGS: dict[str, type[BaseSettings]] = {"api": ApiSettings, "poller": PollerSettings}
# The api process's memory before any connection (RSS of an idle api, docs/deploy.md).
API_IDLE_MIB = 75
KEY = "k3y-0123456789abcdef-ONE"


def render(directory: Path) -> list[dict[str, Any]]:
    """``kustomize build`` for a base that only lists ``resources`` (files or bases)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    extra = set(kustomization) - {"apiVersion", "kind", "resources"}
    assert not extra, f"{directory}: the renderer here knows only `resources`: {extra}"
    docs: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        path = directory / entry
        if path.is_dir():
            docs += render(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(BASE)


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def deployments(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (d for d in docs if d["kind"] == "Deployment")


def container(docs: list[dict[str, Any]], service: str) -> dict[str, Any]:
    pod = one(docs, "Deployment", f"tickerhub-{service}")["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    return main


def config_maps(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def environment(docs: list[dict[str, Any]], service: str) -> dict[str, str]:
    """What the container's process sees: its ConfigMaps in order, then ``env``."""
    main = container(docs, service)
    maps = config_maps(docs)
    env: dict[str, str] = {}
    for source in main.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    env.update({e["name"]: e["value"] for e in main.get("env", [])})
    return env


def named_port(main: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    return int(ports[name])


def quantity(value: str) -> float:
    """A Kubernetes quantity as a number: ``500m`` -> 0.5, ``256Mi`` -> 268435456."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def field_names(cls: type[BaseSettings]) -> set[str]:
    return {name.upper() for name in cls.model_fields}


# -- rendering and the schemas ------------------------------------------------------------


def test_the_base_holds_the_whole_hub_and_is_namespace_agnostic(
    base: list[dict[str, Any]],
) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in base)
    assert kinds == [
        ("ConfigMap", "tickerhub-api"),
        ("ConfigMap", "tickerhub-common"),
        ("ConfigMap", "tickerhub-poller"),
        ("Deployment", "tickerhub-api"),
        ("Deployment", "tickerhub-poller"),
        ("Deployment", "tickerhub-redis"),
        ("HorizontalPodAutoscaler", "tickerhub-api"),
        ("PodDisruptionBudget", "tickerhub-api"),
        ("PodDisruptionBudget", "tickerhub-poller"),
        ("Service", "tickerhub-api"),
        ("Service", "tickerhub-poller-metrics"),
        ("Service", "tickerhub-redis"),
    ]
    for doc in base:
        assert "namespace" not in doc["metadata"], doc["metadata"]["name"]
    assert one(base, "Deployment", "tickerhub-api")["spec"]["replicas"] == 3
    assert one(base, "Deployment", "tickerhub-poller")["spec"]["replicas"] == 2
    # The ServiceMonitors stay out of the base: a plain cluster lacks their CRD.
    assert not [d for d in base if "monitoring.coreos.com" in d["apiVersion"]]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    base: list[dict[str, Any]], version: str
) -> None:
    """Strict: an unknown or misspelt field fails too (offline: the schemas are bundled)."""
    for doc in base:
        kubernetes_validate.validate(doc, version, strict=True)
    secret = yaml.safe_load((BASE / "api-keys-secret.example.yaml").read_text())
    kubernetes_validate.validate(secret, version, strict=True)


def test_the_validator_does_reject_a_broken_manifest(base: list[dict[str, Any]]) -> None:
    """The check above can fail: a misspelt field and a wrong type are caught."""
    broken = json.loads(json.dumps(one(base, "Deployment", "tickerhub-api")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)
    broken = json.loads(json.dumps(one(base, "Deployment", "tickerhub-api")))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) not installed")
@pytest.mark.parametrize("directory", [BASE, MONITORING], ids=["base", "monitoring"])
def test_kustomize_renders_what_the_renderer_here_renders(directory: Path) -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    theirs = [d for d in yaml.safe_load_all(done.stdout) if d]

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(theirs, key=key) == sorted(render(directory), key=key)


# -- what the manifests say about the services ---------------------------------------------


@pytest.mark.parametrize("service", list(SETTINGS))
def test_every_env_name_is_a_setting_of_the_service(
    base: list[dict[str, Any]], service: str
) -> None:
    names = field_names(SETTINGS[service])
    unknown = set(environment(base, service)) - names
    assert unknown == set(), f"tickerhub-{service} sets names its settings do not have"
    assert set(config_maps(base)["tickerhub-common"]) <= field_names(CommonSettings)
    assert "API_KEYS" not in environment(base, service)  # keys come from the Secret only


@pytest.mark.parametrize("service", list(SETTINGS))
def test_the_config_values_load(base: list[dict[str, Any]], service: str, tmp_path: Path) -> None:
    """The ConfigMap values are valid settings (a bad one would stop the pod at start)."""
    env = environment(base, service)
    if "API_KEYS_FILE" in env:
        keys = tmp_path / "api-keys"
        keys.write_text("k3y-0123456789abcdef-ONE\n")
        env["API_KEYS_FILE"] = str(keys)
    cls = SETTINGS[service]
    given = {k.lower(): v for k, v in env.items() if k.lower() in cls.model_fields}
    settings = cls(_env_file=None, **given)
    for name in given:
        assert name in settings.model_fields_set


def test_api_ports_and_probes_match_the_api(base: list[dict[str, Any]]) -> None:
    main = container(base, "api")
    env = environment(base, "api")
    http = named_port(main, "http")
    assert http == int(env["PORT"]) == ApiSettings(_env_file=None, port=env["PORT"]).port
    routes = {getattr(route, "path", None) for route in router.routes}
    probes = {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
    }
    for probe, path in probes.items():
        get = main[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] == "http"
        assert path in routes
        assert path in PROBE_PATHS  # open with API keys on: a probe sends no key
    service = one(base, "Service", "tickerhub-api")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_poller_probes_are_its_own_checks(base: list[dict[str, Any]]) -> None:
    main = container(base, "poller")
    env = environment(base, "poller")
    # Readiness: the image's HEALTHCHECK command, reading the file the env points at.
    text = re.sub(r"\\\n", " ", (ROOT / "services/poller/Dockerfile").read_text())
    line = next(ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK"))
    assert main["readinessProbe"]["exec"]["command"] == json.loads(line.split("CMD", 1)[1])
    beat = Path(env["HEARTBEAT_FILE"])
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert str(beat.parent) in mounts  # writable under readOnlyRootFilesystem
    # Liveness: the event loop serving /metrics on METRICS_PORT.
    metrics = named_port(main, "metrics")
    assert metrics == int(env["METRICS_PORT"]) > 0
    for probe in ("livenessProbe", "startupProbe"):
        assert main[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    ready = main["readinessProbe"]
    assert ready["periodSeconds"] * ready["failureThreshold"] <= MAX_AGE * 2
    service = one(base, "Service", "tickerhub-poller-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_shutdown_fits_in_the_grace_period(base: list[dict[str, Any]]) -> None:
    api = one(base, "Deployment", "tickerhub-api")["spec"]["template"]["spec"]
    sleep = api["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    needed = float(sleep[1]) + CLOSE_WEBSOCKETS_SECONDS + GRACEFUL_SHUTDOWN_SECONDS
    assert api["terminationGracePeriodSeconds"] >= needed + 3  # margin for the exit itself
    poller = one(base, "Deployment", "tickerhub-poller")["spec"]["template"]["spec"]
    assert poller["terminationGracePeriodSeconds"] >= SHUTDOWN_TIMEOUT + 5


def test_pods_run_unprivileged_on_a_read_only_root(base: list[dict[str, Any]]) -> None:
    uid = re.search(r"useradd .*--uid (\d+)", (ROOT / "services/api/Dockerfile").read_text())
    assert uid is not None
    for deployment in deployments(base):
        pod = deployment["spec"]["template"]["spec"]
        name = deployment["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, name
        if name != "tickerhub-redis":
            assert pod["securityContext"]["runAsUser"] == int(uid[1]), name
        volumes = {v["name"] for v in pod["volumes"]}
        for main in pod["containers"]:
            context = main["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert {m["name"] for m in main["volumeMounts"]} <= volumes, name
            for kind in ("cpu", "memory"):
                request = quantity(main["resources"]["requests"][kind])
                assert 0 < request <= quantity(main["resources"]["limits"][kind]), (name, kind)


def test_selectors_pick_the_right_pods(base: list[dict[str, Any]]) -> None:
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in deployments(base)
    }
    for deployment in deployments(base):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pods[deployment["metadata"]["name"]].items()

    def picks(selector: dict[str, str]) -> list[str]:
        return [name for name, labels in pods.items() if selector.items() <= labels.items()]

    for doc in base:
        name = doc["metadata"]["name"]
        if doc["kind"] == "Service":
            target = name.removesuffix("-metrics")
            assert picks(doc["spec"]["selector"]) == [target], name
        elif doc["kind"] == "PodDisruptionBudget":
            assert picks(doc["spec"]["selector"]["matchLabels"]) == [name], name
    hpa = one(base, "HorizontalPodAutoscaler", "tickerhub-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tickerhub-api",
    }
    assert hpa["spec"]["minReplicas"] == 3 <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    redis = re.match(r"redis://([^:/]+):(\d+)/", config_maps(base)["tickerhub-common"]["REDIS_URL"])
    assert redis is not None
    service = one(base, "Service", redis[1])
    assert service["spec"]["ports"][0]["port"] == int(redis[2])


def test_api_keys_come_from_the_secret_file(base: list[dict[str, Any]]) -> None:
    main = container(base, "api")
    pod = one(base, "Deployment", "tickerhub-api")["spec"]["template"]["spec"]
    secret = yaml.safe_load((BASE / "api-keys-secret.example.yaml").read_text())
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    (mount,) = [m for m in main["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    path = Path(environment(base, "api")["API_KEYS_FILE"])
    assert str(path.parent) == mount["mountPath"]
    assert path.name in secret["stringData"]
    # The example's placeholder is not a usable key: applied as it is, the api refuses to
    # start instead of running with a key published in this repository.
    with pytest.raises(ValueError, match="line 2: each key must be"):
        parse_keys(secret["stringData"][path.name])


def measured_kib_per_connection() -> float:
    """The largest 'api RSS per connection KiB' of ours in docs/benchmarks.md."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    found = [float(m) for m in re.findall(r"api RSS per connection KiB\s+([\d.]+)", text)]
    assert len(found) >= 4, found
    return max(found)


def test_api_memory_holds_the_connections_it_admits(base: list[dict[str, Any]]) -> None:
    """WS_MAX_CONNECTIONS x the benchmark's worst KiB per connection + the idle process
    fits in the request (so the scheduler reserves it), with the limit above that."""
    main = container(base, "api")
    connections = int(environment(base, "api")["WS_MAX_CONNECTIONS"])
    needed = API_IDLE_MIB * 2**20 + connections * measured_kib_per_connection() * 2**10
    request = quantity(main["resources"]["requests"]["memory"])
    assert needed <= request
    assert quantity(main["resources"]["limits"]["memory"]) >= 2 * request


def test_service_monitors_scrape_the_services_metrics(base: list[dict[str, Any]]) -> None:
    monitors = render(MONITORING)
    assert {m["metadata"]["name"] for m in monitors} == {"tickerhub-api", "tickerhub-poller"}
    services = [d for d in base if d["kind"] == "Service"]
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["kind"] == "ServiceMonitor"
        assert "namespace" not in monitor["metadata"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint["path"] == "/metrics"
    assert "/metrics" in OPEN_PATHS  # Prometheus sends no API key


# -- the pods' environment and probes, run for real ------------------------------------------


def pod_env(base: list[dict[str, Any]], service: str, **local: str) -> dict[str, str]:
    """The container's environment, with what must differ on this machine (Redis, ports,
    files, no Yahoo) replaced."""
    return {**environment(base, service), **local}


def http_probe(main: dict[str, Any], probe: str, port: int) -> int:
    get = main[probe]["httpGet"]
    assert get["port"] in {p["name"] for p in main["ports"]}
    return httpx.get(f"http://127.0.0.1:{port}{get['path']}", timeout=5).status_code


async def close_frame(ws: Any) -> Any:
    """Read (diffs) until the server closes; the close frame it sent."""
    while True:
        try:
            await recv(ws)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd


@pytest.mark.integration
async def test_the_pods_probes_pass_and_the_api_stops_within_its_grace(
    base: list[dict[str, Any]], redis_server: Any, procs: Procs, tmp_path: Path
) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(f"# mounted from the Secret\n{KEY}\n")
    poller_main = container(base, "poller")
    metrics = free_port()
    poller = procs(ServiceProcess("poller", pod_env(
        base, "poller", REDIS_URL=redis_server.url, SOURCE="simulated", TICKERS="AAPL,MSFT",
        POLL_FREQ="0.2", NEWS_INTERVAL="0", METRICS_PORT=str(metrics),
        HEARTBEAT_FILE=str(tmp_path / "poller.heartbeat"))))  # fmt: skip
    api_main = container(base, "api")
    api = procs(ApiProcess(redis_server.url, **pod_env(
        base, "api", REDIS_URL=redis_server.url, HOST="127.0.0.1", PORT=str(free_port()),
        API_KEYS_FILE=str(keys))))  # fmt: skip
    api.wait_ready(timeout=60)

    def probes_pass() -> bool:
        assert poller.proc is not None
        assert poller.proc.poll() is None, poller.output()
        argv = [sys.executable, *poller_main["readinessProbe"]["exec"]["command"][1:]]
        ready = subprocess.run(argv, env=poller.env, capture_output=True).returncode == 0
        try:
            alive = all(
                http_probe(poller_main, probe, metrics) == 200
                for probe in ("startupProbe", "livenessProbe")
            )
        except httpx.HTTPError:
            return False
        return ready and alive

    await eventually(probes_pass, "the poller's probes pass", limit=60, detail=poller.output)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert http_probe(api_main, probe, api.port) == 200, probe  # no key: probes are open
    async with websockets.connect(f"{api.ws}/ws/prices?api_key={KEY}") as ws:
        assert (await recv(ws))["type"] == "snapshot"
        # Kubernetes: preStop, then SIGTERM, then SIGKILL at terminationGracePeriodSeconds.
        pod = one(base, "Deployment", "tickerhub-api")["spec"]["template"]["spec"]
        pre_stop = float(api_main["lifecycle"]["preStop"]["exec"]["command"][1])
        budget = pod["terminationGracePeriodSeconds"] - pre_stop
        assert api.proc is not None
        api.proc.send_signal(signal.SIGTERM)
        close = await close_frame(ws)
    assert close is not None
    assert close.code == 1001
    assert await asyncio.to_thread(api.proc.wait, budget) == 0
