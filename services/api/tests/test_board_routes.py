"""The board's files: served from the package, open with API keys on, nothing external."""

from __future__ import annotations

import re
from importlib.resources import files

import httpx
import pytest

from tickerhub_api.app import create_app
from tickerhub_api.settings import ApiSettings

KEY = "board-unit-key-0123456789abcdef"


async def get(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        return await client.get(path)


@pytest.mark.parametrize("keys", ["", KEY])
async def test_page_and_assets_are_served_with_or_without_keys(keys: str) -> None:
    app = create_app(ApiSettings(_env_file=None, api_keys=keys))
    for path in ("/", "/board"):
        page = await get(app, path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert "<table" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
    css = await get(app, "/board/static/board.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = await get(app, "/board/static/board.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert "/ws/prices" in js.text
    # Only the board is exempt: data still needs the key.
    assert (await get(app, "/board/static/other.js")).status_code == (401 if keys else 404)
    if keys:
        assert (await get(app, "/tickers")).status_code == 401


def test_the_page_loads_nothing_from_elsewhere_and_never_puts_a_key_in_a_url() -> None:
    board = files("tickerhub_api.board")
    html = board.joinpath("index.html").read_text()
    js = board.joinpath("board.js").read_text()
    css = board.joinpath("board.css").read_text()
    for text in (html, js, css):
        assert not re.search(r"(src|href)=\"(https?:)?//", text)  # no CDN
        assert "@import" not in text
    assert "<script>" not in html  # nothing inline (the CSP forbids it)
    assert "sessionStorage" in js
    assert "api_key" not in js  # the key goes in the first message, never in the URL
    assert "localStorage.setItem(KEY_KEY" not in js
