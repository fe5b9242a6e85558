"""Access: API keys, the WebSocket Origin allowlist, CORS, settings checks and keys kept
out of logs. Units first (no I/O, or the ASGI app in-process without its lifespan),
then end to end against the api as a subprocess with a real redis-server."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.typing import Origin

from tickerhub_api.access import (
    KeyCheck,
    OriginCheck,
    RedactApiKeys,
    cors_options,
    key_from_headers,
    key_id,
    redact,
)
from tickerhub_api.app import create_app
from tickerhub_api.settings import ApiSettings
from tickerhub_core.settings import load_settings
from tickerhub_testkit.net import free_port, wait_for_port
from tickerhub_testkit.processes import Procs, start_api
from tickerhub_testkit.ws import recv

from .conftest import BIN, Producer, frames_until_closed

KEY = "k3y-0123456789abcdef-ONE"
OTHER = "k3y-0123456789abcdef-TWO"
WRONG = "k3y-0123456789abcdef-BAD"

# -- units: keys -------------------------------------------------------------------


def test_key_check() -> None:
    keys = KeyCheck([KEY, OTHER])
    assert keys.enabled
    assert keys.valid(KEY)
    assert keys.valid(OTHER)
    assert not keys.valid(WRONG)
    assert not keys.valid(KEY[:-1])
    assert not keys.valid("")
    assert not keys.valid(None)
    assert not keys.valid("ключ-not-ascii\udcff")  # never raises on odd input
    open_api = KeyCheck([])
    assert not open_api.enabled
    assert not open_api.valid(KEY)


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import tickerhub_api.access as access

    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    keys = KeyCheck([KEY, OTHER])
    assert keys.valid(KEY)
    assert len(calls) == 2  # no early exit on a match
    calls.clear()
    assert not keys.valid(WRONG)
    assert len(calls) == 2


def test_key_from_headers() -> None:
    assert key_from_headers({"authorization": f"Bearer {KEY}"}) == KEY
    assert key_from_headers({"authorization": f"bearer   {KEY} "}) == KEY
    assert key_from_headers({"x-api-key": KEY}) == KEY
    assert key_from_headers({"authorization": f"Basic {KEY}"}) is None
    assert key_from_headers({"authorization": "Bearer "}) is None
    assert key_from_headers({}) is None


def test_key_id_is_short_and_not_the_key() -> None:
    assert len(key_id(KEY)) == 8
    assert key_id(KEY) not in KEY
    assert key_id(KEY) != key_id(OTHER)


# -- units: origins, CORS, logs --------------------------------------------------------


def test_origin_check() -> None:
    check = OriginCheck(["https://app.example.com", "http://localhost:3000/"])
    assert check.allows("https://app.example.com")
    assert check.allows("HTTPS://App.Example.com/")
    assert check.allows("http://localhost:3000")
    assert check.allows(None)  # not a browser
    assert not check.allows("https://evil.example.net")
    assert not check.allows("http://app.example.com")  # scheme matters
    assert not check.allows("http://localhost:3001")
    assert not check.allows("null")
    assert not check.allows("garbage")
    assert OriginCheck([]).allows("https://evil.example.net")
    assert OriginCheck(["*"]).allows("https://evil.example.net")


def test_cors_defaults() -> None:
    open_api = cors_options([], keys_enabled=False)
    assert open_api is not None
    assert open_api["allow_origins"] == ["*"]
    assert open_api["allow_credentials"] is False
    assert cors_options([], keys_enabled=True) is None
    listed = cors_options(["https://App.example.com"], keys_enabled=True)
    assert listed is not None
    assert listed["allow_origins"] == ["https://app.example.com"]
    assert "Authorization" in listed["allow_headers"]


def test_redact_query_keys() -> None:
    assert redact(f"/ws/prices?api_key={KEY}") == "/ws/prices?api_key=***"
    assert redact(f"/tickers?x=1&API_KEY={KEY}&y=2") == "/tickers?x=1&API_KEY=***&y=2"
    assert redact(f"/ws/news?api%5Fkey={KEY}") == "/ws/news?api%5Fkey=***"
    assert redact("/tickers?monkey=1") == "/tickers?monkey=1"
    assert redact(f"< authorization: Bearer {KEY}") == "< authorization: ***"
    assert redact(f"< X-API-Key: {KEY}") == "< X-API-Key: ***"
    assert KEY not in redact(f'< TEXT \'{{"auth": "{KEY}"}}\' [35 bytes]')
    assert KEY[:10] not in redact(f'< TEXT \'{{"auth":"{KEY[:10]}...')
    assert redact('{"watchlist": ["AAPL"]}') == '{"watchlist": ["AAPL"]}'
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s"',
        ("1.2.3.4", "GET", f"/?api_key={KEY}"),
        None,
    )
    assert RedactApiKeys().filter(record)
    assert KEY not in record.getMessage()


def test_bad_access_settings_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ({"api_keys": "short"}, "API_KEYS"),
        ({"api_keys": f"{KEY},has space in it!!"}, "API_KEYS"),
        ({"api_keys": KEY, "cors_origins": "*"}, "CORS_ORIGINS"),
        ({"allowed_origins": "example.com"}, "ALLOWED_ORIGINS"),
        ({"cors_origins": "https://ok.example, nope"}, "CORS_ORIGINS"),
        ({"ws_max_connections": "0"}, "WS_MAX_CONNECTIONS"),
        ({"ws_max_messages_per_second": "-1"}, "WS_MAX_MESSAGES_PER_SECOND"),
        ({"ws_idle_timeout": "-1"}, "WS_IDLE_TIMEOUT"),
    ]
    for overrides, name in cases:
        with pytest.raises(SystemExit) as info:
            load_settings(ApiSettings, "api", _env_file=None, **overrides)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"api: invalid setting {name}: "), err
        assert KEY not in err  # a key is never echoed, even when the setting is wrong
    settings = load_settings(ApiSettings, "api", _env_file=None, api_keys=f" {KEY} ,{OTHER}")
    assert settings.api_key_list == (KEY, OTHER)
    assert KEY not in repr(settings)


def test_list_settings_from_the_environment_trim_and_drop_empties(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Written "a,b" in the environment (never JSON), like the poller's TICKERS.
    monkeypatch.setenv("API_KEYS", f" {KEY} ,, {OTHER} ,")
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://a.example, ,https://b.example:8443 ")
    monkeypatch.setenv("CORS_ORIGINS", " https://a.example")
    settings = load_settings(ApiSettings, "api", _env_file=None)
    assert settings.api_key_list == (KEY, OTHER)
    assert settings.allowed_origin_list == ("https://a.example", "https://b.example:8443")
    assert settings.cors_origin_list == ("https://a.example",)
    assert KEY not in repr(settings)
    for name in ("API_KEYS", "ALLOWED_ORIGINS", "CORS_ORIGINS"):
        monkeypatch.setenv(name, "")
    settings = load_settings(ApiSettings, "api", _env_file=None)
    assert settings.api_key_list == settings.allowed_origin_list == settings.cors_origin_list == ()


# -- units: the ASGI app in-process (middleware only; no Redis needed) -------------------


async def asgi_get(app: Any, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        return await client.request(method, path, headers=headers)


async def test_rest_401_without_a_key_and_open_probes() -> None:
    app = create_app(ApiSettings(_env_file=None, api_keys=KEY))
    response = await asgi_get(app, "/tickers")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in response.json()["detail"]
    response = await asgi_get(app, "/tickers", authorization=f"Bearer {WRONG}")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert (await asgi_get(app, "/news", **{"x-api-key": WRONG})).status_code == 401
    assert (await asgi_get(app, "/nowhere")).status_code == 401  # no route probing either
    assert (await asgi_get(app, "/healthz")).status_code == 200
    assert (await asgi_get(app, "/openapi.json")).status_code == 200
    assert (await asgi_get(app, "/docs")).status_code == 200


async def test_cors_open_api_allows_any_origin_without_credentials() -> None:
    app = create_app(ApiSettings(_env_file=None))
    response = await asgi_get(app, "/healthz", origin="https://anywhere.example")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_cors_with_keys_is_off_unless_origins_are_listed() -> None:
    app = create_app(ApiSettings(_env_file=None, api_keys=KEY))
    response = await asgi_get(app, "/healthz", origin="https://anywhere.example")
    assert "access-control-allow-origin" not in response.headers
    app = create_app(
        ApiSettings(_env_file=None, api_keys=KEY, cors_origins="https://app.example.com")
    )
    preflight = await asgi_get(
        app,
        "/tickers",
        "OPTIONS",
        origin="https://app.example.com",
        **{
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization",
        },
    )
    assert preflight.status_code == 200  # answered without a key
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    denied = await asgi_get(app, "/tickers", origin="https://app.example.com")
    assert denied.status_code == 401
    # The page may read the 401: it carries the CORS headers.
    assert denied.headers["access-control-allow-origin"] == "https://app.example.com"
    other = await asgi_get(app, "/healthz", origin=Origin("https://evil.example.net"))
    assert "access-control-allow-origin" not in other.headers


# -- end to end -----------------------------------------------------------------------


@pytest.mark.integration
async def test_rest_needs_a_key_when_keys_are_set(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, API_KEYS=f"{KEY},{OTHER}")
    async with httpx.AsyncClient(base_url=api.http) as http:
        for path in ("/tickers", "/tickers/AAPL", "/news"):
            response = await http.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert (await http.get(path, headers={"X-API-Key": WRONG})).status_code == 401
        ok = await http.get("/tickers", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200
        assert ok.json() == aapl_msft.quotes
        ok = await http.get("/tickers/aapl", headers={"X-API-Key": OTHER})
        assert ok.status_code == 200
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200


@pytest.mark.integration
async def test_websockets_need_a_key_before_any_data(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, API_KEYS=KEY, WS_AUTH_TIMEOUT="1")
    refused = {
        "no key, silent": (f"{api.ws}/ws/prices", None, {}),
        "wrong query key": (f"{api.ws}/ws/prices?api_key={WRONG}", None, {}),
        "wrong header key": (f"{api.ws}/ws/news", None, {"X-API-Key": WRONG}),
        "wrong first message": (f"{api.ws}/ws/prices", {"auth": WRONG}, {}),
        "data before auth": (f"{api.ws}/ws/news", {"watchlist": ["AAPL"]}, {}),
    }
    for case, (url, first, headers) in refused.items():
        async with websockets.connect(url, additional_headers=headers) as ws:
            if first is not None:
                await ws.send(orjson.dumps(first).decode())
            frames, close = await frames_until_closed(ws)
        assert frames == [], case  # no snapshot, no error message: nothing
        assert close is not None, case
        assert close.code == 1008, case
    admitted = {
        "query": (f"{api.ws}/ws/prices?api_key={KEY}", None, {}),
        "bearer": (f"{api.ws}/ws/prices", None, {"Authorization": f"Bearer {KEY}"}),
        "first message": (f"{api.ws}/ws/prices", {"auth": KEY}, {}),
    }
    for case, (url, first, headers) in admitted.items():
        async with websockets.connect(url, additional_headers=headers) as ws:
            if first is not None:
                await ws.send(orjson.dumps(first).decode())
            snapshot = await recv(ws)
            assert snapshot["type"] == "snapshot", case
            assert snapshot["data"] == aapl_msft.quotes, case
            # A later {"auth": ...} is harmless; the stream goes on.
            await ws.send(orjson.dumps({"auth": KEY}).decode())
            await ws.send("ping")
            assert await recv(ws) == "pong", case
    async with websockets.connect(f"{api.ws}/ws/news") as ws:
        await ws.send(orjson.dumps({"auth": KEY}).decode())
        assert (await recv(ws))["type"] == "snapshot"


@pytest.mark.integration
async def test_open_api_ignores_auth_messages(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url)
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:
        assert (await recv(ws))["type"] == "snapshot"
        await ws.send(orjson.dumps({"auth": "anything"}).decode())
        await ws.send("ping")
        assert await recv(ws) == "pong"


@pytest.mark.integration
async def test_origin_allowlist_refuses_other_browser_origins(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, ALLOWED_ORIGINS="https://app.example.com")
    for path in ("/ws/prices", "/ws/news"):
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(f"{api.ws}{path}", origin=Origin("https://evil.example.net"))
        assert info.value.response.status_code == 403
    async with websockets.connect(
        f"{api.ws}/ws/prices", origin=Origin("https://app.example.com")
    ) as ws:
        assert (await recv(ws))["type"] == "snapshot"
    async with websockets.connect(f"{api.ws}/ws/prices") as ws:  # no Origin: not a browser
        assert (await recv(ws))["type"] == "snapshot"


@pytest.mark.integration
async def test_keys_never_reach_the_logs(
    redis_server: Any, aapl_msft: Producer, tmp_path: Path
) -> None:
    port = free_port()
    log_file = tmp_path / "api.log"
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "PORT": str(port),
        "LOG_LEVEL": "DEBUG",
        "API_KEYS": f"{KEY},{OTHER}",
    }
    with log_file.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "api")], env=env, stdout=out, stderr=out)  # noqa: ASYNC220
    try:
        wait_for_port(port)
        base = f"127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            await http.get(f"http://{base}/tickers?api_key={KEY}")
            await http.get(f"http://{base}/tickers", headers={"X-API-Key": OTHER})
            await http.get(f"http://{base}/tickers", headers={"Authorization": f"Bearer {WRONG}"})
        async with websockets.connect(f"ws://{base}/ws/prices?api_key={KEY}") as ws:
            assert (await recv(ws))["type"] == "snapshot"
        async with websockets.connect(f"ws://{base}/ws/prices?api_key={WRONG}") as ws:
            await frames_until_closed(ws)
        async with websockets.connect(f"ws://{base}/ws/news") as ws:
            await ws.send(orjson.dumps({"auth": OTHER}).decode())
            assert (await recv(ws))["type"] == "snapshot"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    text = log_file.read_text(errors="replace")
    assert "api_key=***" in text  # the access log did show those requests
    for secret in (KEY, OTHER, WRONG, KEY[4:20]):
        assert secret not in text, text


def test_redaction_survives_a_bad_log_call() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "%d items", ("not a number",), None)
    assert RedactApiKeys().filter(record)


@pytest.mark.integration
async def test_with_keys_the_docs_are_open_and_declare_how_to_send_a_key(
    redis_server: Any, aapl_msft: Producer, procs: Procs
) -> None:
    api = start_api(procs, redis_server.url, API_KEYS=KEY)
    async with httpx.AsyncClient(base_url=api.http) as http:
        for path in ("/docs", "/redoc", "/openapi.json"):  # both renderings alike
            assert (await http.get(path)).status_code == 200, path
        schema = (await http.get("/openapi.json")).json()
        schemes = schema["components"]["securitySchemes"]
        assert {"type": "http", "scheme": "bearer"}.items() <= schemes["bearerKey"].items()
        assert schemes["apiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        assert schema["security"] == [{"bearerKey": []}, {"apiKeyHeader": []}]
        assert schema["paths"]["/readyz"]["get"]["security"] == []
        assert "security" not in schema["paths"]["/tickers"]["get"]  # the global one applies
    open_api = start_api(procs, redis_server.url)
    async with httpx.AsyncClient(base_url=open_api.http) as http:
        assert "securitySchemes" not in (await http.get("/openapi.json")).json().get(
            "components", {}
        )


def test_redaction_keeps_redacted_arguments_when_they_suffice() -> None:
    """JSON logs build fields from the arguments: keep them (redacted) when that is safe."""
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", f"/ws/prices?api_key={KEY}", "1.1", 101), None,
    )  # fmt: skip
    assert RedactApiKeys().filter(record)
    assert record.args == ("1.2.3.4:5", "GET", "/ws/prices?api_key=***", "1.1", 101)
    assert KEY not in record.getMessage()


def test_redaction_flattens_when_the_key_spans_message_and_arguments() -> None:
    # "Bearer <key>" alone does not look like a secret; only with the message's header name.
    record = logging.LogRecord(
        "x", logging.INFO, "", 0, "Authorization: %s", (f"Bearer {KEY}",), None
    )
    assert RedactApiKeys().filter(record)
    assert record.args == ()
    assert KEY not in record.getMessage()
