"""Headless Chromium driven over the Chrome DevTools Protocol (its own WebSocket).

For the browser tests (tests/browser): start Debian's ``chromium`` on a page, then
run JavaScript in it (:meth:`Browser.evaluate`) or call any CDP method
(:meth:`Browser.call`, e.g. ``Page.captureScreenshot``). Nothing else: no driver,
no extra package.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tickerhub_testkit.wait import eventually_blocking

WAIT = 20.0  # generous: only to avoid hanging
# Flags this machine needs: no sandbox as root, no GPU, and no background connections
# to Google that the closed network would refuse.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Headless Chromium showing one page; ``evaluate`` runs JS in it over CDP."""

    def __init__(
        self, binary: str, url: str, tmp_path: Path, window: tuple[int, int] = (1200, 800)
    ) -> None:
        self.profile = tmp_path / "chromium-profile"  # fresh every time
        self.log_path = tmp_path / "chromium.log"
        self.url = url
        size = f"--window-size={window[0]},{window[1]}"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, *CHROMIUM_FLAGS, size, f"--user-data-dir={self.profile}", url],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: its helpers go with it
            )
        self.cdp: ClientConnection | None = None
        self._next_id = 0

    def page_target(self) -> str:
        """The DevTools WebSocket URL of our page (the port is in DevToolsActivePort)."""
        port_file = self.profile / "DevToolsActivePort"

        def target() -> str | None:
            assert self.proc.poll() is None, f"chromium exited:\n{self.output()}"
            # Not there yet, or half written (empty: IndexError), or no page yet.
            with contextlib.suppress(OSError, ValueError, IndexError, httpx.HTTPError):
                port = int(port_file.read_text().split()[0])
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                pages = [t for t in targets if t["type"] == "page" and t["url"] == self.url]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            return None

        found = eventually_blocking(
            target, "a DevTools page target", limit=WAIT, interval=0.1, detail=self.output
        )
        assert found is not None  # eventually_blocking returns only a truthy result
        return found

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One CDP command; its ``result``."""
        assert self.cdp is not None
        self._next_id += 1
        self.cdp.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:  # skip events (of domains a caller enabled)
            answer = json.loads(self.cdp.recv(timeout=WAIT))
            if answer.get("id") == self._next_id:
                break
        assert "error" not in answer, answer
        return answer["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def screenshot(self, path: Path, width: int, height: int) -> None:
        """A PNG of the page at exactly ``width`` x ``height`` CSS pixels."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = self.call(
            "Page.captureScreenshot",
            format="png",
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        # Chromium's helpers (zygote, renderer, ...) are in the group we started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def headless_chromium(
    binary: str, url: str, tmp_path: Path, window: tuple[int, int] = (1200, 800)
) -> Iterator[Browser]:
    browser = Browser(binary, url, tmp_path, window)
    try:
        with connect(browser.page_target(), max_size=None) as cdp:
            browser.cdp = cdp
            yield browser
    finally:
        browser.close()
