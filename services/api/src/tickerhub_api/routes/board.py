"""The board: one page (HTML, CSS, plain JavaScript) shipped in this package.

``GET /`` and ``GET /board`` serve the page, ``/board/static/<file>`` its two
assets. The page only speaks the documented protocol (``/ws/prices``,
``GET /tickers/{symbol}/bars``), so it needs nothing from the server but these
files. They stay reachable when API keys are on (``access.OPEN_PATHS``): the page
itself asks for the key and sends it as the WebSocket's first message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from tickerhub_api.access import BOARD_ASSETS

router = APIRouter(include_in_schema=False)

_TYPES = {
    "board.css": "text/css; charset=utf-8",
    "board.js": "text/javascript; charset=utf-8",
}
# Everything comes from this origin: no CDN, nothing inline (so the policy can say so).
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
}


@cache
def _read(name: str) -> bytes:
    return files("tickerhub_api.board").joinpath(name).read_bytes()


@router.get("/")
@router.get("/board")
async def board() -> Response:
    return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)


def _asset(name: str) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:
        return Response(_read(name), media_type=_TYPES[name], headers=_HEADERS)

    return serve


for _path in BOARD_ASSETS:
    _name = _path.rsplit("/", 1)[1]
    router.add_api_route(_path, _asset(_name), methods=["GET"], name=f"board:{_name}")
