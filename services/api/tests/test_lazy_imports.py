"""A process that never serves history never imports yfinance or pandas (tens of MiB).

The app creates its HistoryService in the lifespan; the service imports
yfinance on its first fetch only. Checked in a fresh interpreter, since this
test process has imported them already for other tests.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from fastapi.testclient import TestClient
from tickerhub_api.app import create_app
from tickerhub_api.settings import ApiSettings

app = create_app(ApiSettings(redis_url="redis://127.0.0.1:1/0"))
with TestClient(app) as client:
    assert client.get("/healthz").status_code == 200
    assert app.state.history is not None
heavy = sorted(m for m in ("yfinance", "pandas") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_serving_without_history_does_not_import_yfinance() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "none", result.stdout
