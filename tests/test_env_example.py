""".env.example documents every setting of both services, with its real default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from tickerhub_api.settings import ApiSettings
from tickerhub_poller.settings import PollerSettings

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def example_values() -> dict[str, str]:
    values = {}
    for line in EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


@pytest.mark.parametrize("cls", [PollerSettings, ApiSettings])
def test_every_setting_is_documented(cls: type[BaseSettings]) -> None:
    documented = example_values()
    missing = [name.upper() for name in cls.model_fields if name.upper() not in documented]
    assert missing == [], f"add these to .env.example: {missing}"


@pytest.mark.parametrize("cls", [PollerSettings, ApiSettings])
def test_the_example_file_loads_and_matches_the_defaults(
    cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in example_values():
        monkeypatch.delenv(key, raising=False)
    from_file = cls(_env_file=EXAMPLE)
    defaults = cls(_env_file=None)
    assert from_file.model_dump() == defaults.model_dump()
