""".env.example documents every setting of both services, with its real default,
and sets nothing that would shadow what the images or the compose file set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from tickerhub_api.settings import ApiSettings
from tickerhub_poller.settings import PollerSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / ".env.example"
# A setting documented but left unset: "# NAME=value" (a comment: .env gets nothing).
COMMENTED = re.compile(r"^#\s*([A-Z][A-Z0-9_]*)=")


def example_values() -> dict[str, str]:
    """The lines that set something (what compose's env_file passes to the containers)."""
    values = {}
    for line in EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def documented() -> set[str]:
    commented = {m[1] for line in EXAMPLE.read_text().splitlines() if (m := COMMENTED.match(line))}
    return set(example_values()) | commented


def image_env(service: str) -> dict[str, str]:
    """ENV of the Dockerfile's final stage (what the running container starts with)."""
    text = re.sub(r"\\\n", " ", (ROOT / "services" / service / "Dockerfile").read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            env = {}
        elif word.upper() == "ENV":
            env.update(dict(pair.split("=", 1) for pair in rest.split()))
    return env


def compose_services() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


@pytest.mark.parametrize("cls", [PollerSettings, ApiSettings])
def test_every_setting_is_documented(cls: type[BaseSettings]) -> None:
    missing = [name.upper() for name in cls.model_fields if name.upper() not in documented()]
    assert missing == [], f"add these to .env.example: {missing}"


@pytest.mark.parametrize("cls", [PollerSettings, ApiSettings])
def test_the_example_file_loads_and_matches_the_defaults(
    cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in documented():
        monkeypatch.delenv(key, raising=False)
    from_file = cls(_env_file=EXAMPLE)
    defaults = cls(_env_file=None)
    assert from_file.model_dump() == defaults.model_dump()


def test_the_rule_sees_the_heartbeat_the_poller_image_sets() -> None:
    """The parsing below finds real ENV lines (else the next test could not fail)."""
    assert image_env("poller")["HEARTBEAT_FILE"] == "/tmp/poller.heartbeat"
    assert "PATH" in image_env("api")


@pytest.mark.parametrize("service", ["poller", "api"])
def test_no_example_line_shadows_what_the_image_or_compose_sets(service: str) -> None:
    """`make start` copies .env.example to .env, and compose's env_file passes every line
    to the containers, over the image's ENV (compose's `environment:` wins over both).
    So: no empty line for anything the image or compose sets, and whatever the image
    sets that .env could also set is pinned under `environment:` too, to the same value
    (that also holds for users' older .env files, e.g. one with `HEARTBEAT_FILE=`)."""
    example = example_values()
    image = image_env(service)
    compose = {k: str(v) for k, v in (compose_services()[service].get("environment") or {}).items()}
    blank = sorted(k for k, v in example.items() if v == "" and (k in image or k in compose))
    assert blank == [], f".env.example blanks what the {service} image/compose set: {blank}"
    settable = set(example) | documented()
    unpinned = sorted(k for k in image if k in settable and compose.get(k) != image[k])
    assert unpinned == [], (
        f"the {service} image sets {unpinned}, which .env can override: "
        "set them under environment: in docker-compose.yml as well"
    )
