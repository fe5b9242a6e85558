"""API_KEYS_FILE: keys from a file (Docker/Kubernetes secrets). The format and every way
the file can be wrong as units; then the api as a subprocess, taking a key from a file
and refusing to start (one line, exit 2, no traceback) on a missing one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tickerhub_api.keys_file import MAX_FILE_BYTES, parse_keys, read_keys_file
from tickerhub_api.settings import ApiSettings
from tickerhub_core.settings import load_settings
from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.ws import recv

from .conftest import BIN, Producer, frames_until_closed

KEY = "k3y-0123456789abcdef-ONE"
OTHER = "k3y-0123456789abcdef-TWO"
THIRD = "k3y-0123456789abcdef-3#3"  # '#' inside a key is fine, only not first
WRONG = "k3y-0123456789abcdef-BAD"


def keys_file(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "api-keys"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return str(path)


# -- the format -----------------------------------------------------------------------


def test_one_key_per_line_with_comments_blank_lines_and_api_keys_syntax() -> None:
    text = f"# rotated 2026-11\n\n  {KEY}  \n   # old one, kept until clients move:\n{OTHER},{THIRD},\n"
    assert parse_keys(text) == [KEY, OTHER, THIRD]
    # An API_KEYS value pasted as it is, with a Windows line end and a repeat.
    assert parse_keys(f" {KEY} ,, {OTHER}\r\n{KEY}") == [KEY, OTHER]


def test_a_bad_key_names_its_line_but_never_the_key() -> None:
    with pytest.raises(ValueError, match=r"^line 3: each key must be 16 to 256") as info:
        parse_keys(f"# keys\n{KEY}\nshort-{KEY[:4]}\n")
    assert KEY[:4] not in str(info.value)
    with pytest.raises(ValueError, match=r"^line 1: "):
        parse_keys(f"{KEY} {OTHER}")  # a space is not a separator: it would be one key


# -- what is wrong with the file ---------------------------------------------------------


def test_every_unusable_file_is_one_clear_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    plain = tmp_path / "plain"
    plain.write_text(KEY)
    cases = {
        missing: f"{missing}: no such file",
        str(tmp_path): f"{tmp_path}: is a directory, not a file",
        # Unreadable (as root, permissions do not stop a read: a path through a file does).
        f"{plain}/keys": f"{plain}/keys: cannot read it (Not a directory)",
    }
    for path, message in cases.items():
        with pytest.raises(ValueError, match=r"^/") as info:
            read_keys_file(path)
        assert str(info.value) == message
    empty = keys_file(tmp_path, "")
    with pytest.raises(ValueError, match=r"api-keys: holds no key"):
        read_keys_file(empty)
    only_comments = keys_file(tmp_path, "# no keys yet\n\n   \n")
    with pytest.raises(ValueError, match=r"holds no key \(one per line"):
        read_keys_file(only_comments)
    binary = keys_file(tmp_path, b"\xff\xfe" + KEY.encode())
    with pytest.raises(ValueError, match="not UTF-8 text"):
        read_keys_file(binary)
    huge = keys_file(tmp_path, (KEY + "\n") * (MAX_FILE_BYTES // len(KEY)))
    with pytest.raises(ValueError, match="larger than"):
        read_keys_file(huge)


# -- the settings ---------------------------------------------------------------------


def test_settings_take_the_keys_from_the_file(tmp_path: Path) -> None:
    path = keys_file(tmp_path, f"{KEY}\n{OTHER}\n")
    settings = ApiSettings(_env_file=None, api_keys_file=path)
    assert settings.api_key_list == (KEY, OTHER)
    assert settings.api_keys_file == path
    assert KEY not in repr(settings)
    # With keys from the file, CORS * is refused as with API_KEYS.
    with pytest.raises(ValueError, match="cannot be combined with API_KEYS"):
        ApiSettings(_env_file=None, api_keys_file=path, cors_origins="*")


def test_an_empty_setting_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """API_KEYS_FILE= (an .env copied from .env.example with the line filled blank)."""
    monkeypatch.setenv("API_KEYS_FILE", "  ")
    monkeypatch.delenv("API_KEYS", raising=False)
    settings = load_settings(ApiSettings, "api", _env_file=None)
    assert settings.api_keys_file is None
    assert settings.api_key_list == ()


def test_bad_file_settings_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = keys_file(tmp_path, KEY)
    cases = [
        ({"api_keys_file": str(tmp_path / "missing")}, "API_KEYS_FILE", "no such file"),
        ({"api_keys_file": good, "api_keys": OTHER}, "API_KEYS", "cannot be combined"),
    ]
    for overrides, name, why in cases:
        with pytest.raises(SystemExit) as info:
            load_settings(ApiSettings, "api", _env_file=None, **overrides)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"api: invalid setting {name}: "), err
        assert why in err
        assert KEY not in err
        assert OTHER not in err


# -- end to end -------------------------------------------------------------------------


@pytest.mark.integration
async def test_the_api_accepts_a_key_from_the_file(
    redis_server: Any, aapl_msft: Producer, procs: Procs, tmp_path: Path
) -> None:
    path = keys_file(tmp_path, f"# the api's keys\n{KEY}\n{OTHER}\n")
    env = {"API_KEYS_FILE": path, "API_KEYS": ""}  # the test runner's API_KEYS, if any, off
    api = start_api(procs, redis_server.url, **env)
    async with httpx.AsyncClient(base_url=api.http) as http:
        assert (await http.get("/tickers")).status_code == 401
        assert (await http.get("/tickers", headers={"X-API-Key": WRONG})).status_code == 401
        ok = await http.get("/tickers", headers={"Authorization": f"Bearer {OTHER}"})
        assert ok.status_code == 200
        assert ok.json() == aapl_msft.quotes
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        await ws.send(orjson.dumps({"auth": KEY}).decode())
        assert (await recv(ws))["data"] == aapl_msft.quotes
    async with websockets.connect(f"{api.ws}/ws/prices?api_key={WRONG}") as ws:
        frames, close = await frames_until_closed(ws)
    assert frames == []
    assert close is not None
    assert close.code == 1008


@pytest.mark.integration
def test_the_api_will_not_start_on_a_missing_keys_file(tmp_path: Path) -> None:
    missing = tmp_path / "secrets" / "api-keys"
    env = {**os.environ, "API_KEYS_FILE": str(missing), "API_KEYS": ""}
    done = subprocess.run(
        [str(BIN / "api")], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 2, done
    assert done.stderr == f"api: invalid setting API_KEYS_FILE: {missing}: no such file\n"
    assert "Traceback" not in done.stdout + done.stderr
