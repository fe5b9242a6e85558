"""The Docker images and compose file, checked with what runs here (no Docker engine).

Each Dockerfile's install command is run for real into a scratch copy of the
workspace, and the resulting console script and healthcheck are then started
exactly as the image would start them.
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


@pytest.mark.parametrize("service", list(SERVICES))
def test_dockerfile_runs_the_packaged_console_script_as_non_root(service: str) -> None:
    steps = instructions(dockerfile(service))
    runs = [rest for word, rest in steps if word == "RUN"]
    assert f"uv sync --frozen --no-dev --no-editable --package {SERVICES[service]}" in runs
    final_stage = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
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


@pytest.fixture(scope="module")
def image_envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run each Dockerfile's ``uv sync`` into a scratch copy of the build context."""
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
    for service, package in SERVICES.items():
        venv = context / f"venv-{service}"
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON": sys.executable}
        cmd = f"uv sync --frozen --no-dev --no-editable --package {package}"
        subprocess.run(shlex.split(cmd), cwd=context, env=env, check=True, capture_output=True)
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
