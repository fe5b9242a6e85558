"""The Docker images and compose file, checked without a Docker engine
(tests/compose runs the real stack where one is available).

Each Dockerfile's build steps are run for real on a scratch copy of the workspace,
in its layer order (the manifests-only stage, the dependency sync, then the source
and the project sync), and the resulting console script and healthcheck are then
started exactly as the image would start them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from tickerhub_testkit.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"poller": "tickerhub-poller", "api": "tickerhub-api"}


def dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_compose_file_wires_the_three_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "poller", "api"}
    for name in SERVICES:
        build = services[name]["build"]
        assert build["context"] == "."
        assert (ROOT / build["dockerfile"]).is_file()
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["env_file"][0]["path"] == ".env"
    assert services["api"]["ports"] == ["${API_PORT:-8000}:8000"]
    assert "healthcheck" in services["redis"]


def test_compose_runs_two_pollers_that_cannot_collide() -> None:
    """One leads, one stands by (the lease): two replicas, so nothing per-container may
    be fixed on the host side: no container name, no published port."""
    poller = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["poller"]
    assert poller["deploy"]["replicas"] == 2
    assert "container_name" not in poller
    assert "ports" not in poller
    assert poller["environment"]["HEARTBEAT_FILE"].startswith("/tmp/")  # each its own /tmp


def stage(service: str, name: str) -> list[tuple[str, str]]:
    """The instructions of one build stage (``FROM ... AS name``); "" is the final stage."""
    stages: list[list[tuple[str, str]]] = []
    names: list[str] = []
    for word, rest in instructions(dockerfile(service)):
        if word == "FROM":
            parts = rest.split()
            names.append(parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else "")
            stages.append([])
        stages[-1].append((word, rest))
    return stages[-1] if name == "" else stages[names.index(name)]


def runs(steps: list[tuple[str, str]]) -> list[str]:
    """RUN commands without their ``--mount=`` options."""
    return [re.sub(r"^(--mount=\S+\s+)+", "", rest) for word, rest in steps if word == "RUN"]


def uv_syncs(service: str) -> tuple[str, str]:
    """(dependencies only, then the project): the build stage's two ``uv sync`` runs."""
    syncs = [r for r in runs(stage(service, "build")) if r.startswith("uv sync")]
    assert len(syncs) == 2, syncs
    return syncs[0], syncs[1]


@pytest.mark.parametrize("service", list(SERVICES))
def test_dependencies_get_their_own_cached_layer_before_the_source(service: str) -> None:
    build = stage(service, "build")
    deps, project = uv_syncs(service)
    package = SERVICES[service]
    assert (
        deps
        == f"uv sync --frozen --no-dev --no-editable --no-install-workspace --package {package}"
    )
    assert project == f"uv sync --frozen --no-dev --no-editable --package {package}"
    order = [(w, r) for w, r in build if w in {"COPY", "RUN"}]
    copies = [r for w, r in order if w == "COPY"]
    # manifests first (from the stage that keeps only them), the source only after the deps
    assert copies.index("--from=manifests /src /app") < copies.index(". .")
    sync_runs = [i for i, (w, r) in enumerate(order) if w == "RUN" and "uv sync" in r]
    source = order.index(("COPY", ". ."))
    assert sync_runs[0] < source < sync_runs[1]
    for word, rest in build:
        if word == "RUN" and "uv sync" in rest:
            assert "--mount=type=cache,target=/root/.cache/uv" in rest


@pytest.mark.parametrize("service", list(SERVICES))
def test_dockerfile_runs_the_packaged_console_script_as_non_root(service: str) -> None:
    final_stage = stage(service, "")
    users = [rest for word, rest in final_stage if word == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    cmd = [rest for word, rest in final_stage if word == "CMD"][-1]
    pyproject = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    assert cmd == f'["{service}"]'
    assert service in pyproject["project"]["scripts"]
    assert any(word == "HEALTHCHECK" for word, _ in final_stage)


def test_both_images_build_with_the_same_uv() -> None:
    """One uv for both images (the release line that writes uv.lock: see the Dockerfiles)."""
    images = set()
    for service in SERVICES:
        copies = [rest for word, rest in instructions(dockerfile(service)) if word == "COPY"]
        images.add(next(c for c in copies if "astral-sh/uv" in c).split()[0])
    assert len(images) == 1, images


def members(root: Path) -> set[str]:
    """The workspace members' directories under ``root`` (from the root pyproject's globs)."""
    workspace = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    found = {p.parent for glob in workspace["members"] for p in root.glob(f"{glob}/pyproject.toml")}
    return {str(p.relative_to(root)) for p in found}


@pytest.fixture(scope="module")
def image_envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run each Dockerfile's build steps, in their layer order, on scratch copies."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    context = tmp_path_factory.mktemp("context")
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "tests", "docs", ".*cache")
    for item in ROOT.iterdir():
        if item.name in {".git", ".venv", "docs", "tests"} or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, context / item.name, ignore=ignore)
        else:
            shutil.copy2(item, context / item.name)
    envs = {}
    for service in SERVICES:
        # Stage "manifests": the context, filtered by its RUN (as written in the Dockerfile).
        work = tmp_path_factory.mktemp(f"build-{service}")
        shutil.copytree(context, work, dirs_exist_ok=True)
        for command in runs(stage(service, "manifests")):
            subprocess.run(["sh", "-c", command], cwd=work, check=True)
        kept = {p.relative_to(work) for p in work.rglob("*") if p.is_file()}
        assert {p.name for p in kept} <= {"pyproject.toml", "uv.lock"}, kept
        wanted = {Path("uv.lock"), Path("pyproject.toml")}
        assert wanted | {Path(m, "pyproject.toml") for m in members(context)} <= kept
        venv = tmp_path_factory.mktemp(f"venv-{service}") / ".venv"
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON": sys.executable}
        deps, project = uv_syncs(service)
        # The dependency layer needs nothing but the manifests, and installs no workspace code.
        subprocess.run(shlex.split(deps), cwd=work, env=env, check=True, capture_output=True)
        site = next(venv.glob("lib/python*/site-packages"))
        assert (site / "pydantic").is_dir()
        assert not list(site.glob("tickerhub_*")), "workspace code in the dependency layer"
        shutil.copytree(context, work, dirs_exist_ok=True)  # COPY . .
        subprocess.run(shlex.split(project), cwd=work, env=env, check=True, capture_output=True)
        envs[service] = venv
    return envs


@pytest.mark.integration
def test_poller_image_command_starts_and_its_healthcheck_tracks_redis(
    image_envs: dict[str, Path], redis_server, tmp_path: Path
) -> None:
    venv = image_envs["poller"]
    assert not (venv / "bin" / "pytest").exists()  # --no-dev: no test tools in the image
    beat = tmp_path / "beat"
    env = {**os.environ, "REDIS_URL": redis_server.url, "SOURCE": "simulated",
           "TICKERS": "AAPL", "POLL_FREQ": "0.1", "HEARTBEAT_FILE": str(beat)}  # fmt: skip
    health = [str(venv / "bin" / "python"), "-m", "tickerhub_poller.healthcheck"]
    assert subprocess.run(health, env=env, capture_output=True).returncode == 1
    proc = subprocess.Popen([str(venv / "bin" / "poller")], env=env, cwd=tmp_path,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not beat.exists():
            assert time.monotonic() < deadline, "no heartbeat"
            assert proc.poll() is None
            time.sleep(0.1)
        assert subprocess.run(health, env=env, capture_output=True).returncode == 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


@pytest.mark.integration
def test_api_image_command_serves_readyz_for_its_healthcheck(
    image_envs: dict[str, Path], redis_server, tmp_path: Path
) -> None:
    venv = image_envs["api"]
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server.url, "PORT": str(port), "HOST": "127.0.0.1"}
    proc = subprocess.Popen([str(venv / "bin" / "api")], env=env, cwd=tmp_path)
    try:
        wait_for_port(port, timeout=30)
        deadline = time.monotonic() + 20
        while httpx.get(f"http://127.0.0.1:{port}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "api never became ready"
            time.sleep(0.1)
        # The HEALTHCHECK line of the image, run as written.
        line = next(r for w, r in instructions(dockerfile("api")) if w == "HEALTHCHECK")
        argv = yaml.safe_load(line[line.index("CMD") + 3 :])
        argv[0] = str(venv / "bin" / "python")
        assert subprocess.run(argv, env=env, capture_output=True).returncode == 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
