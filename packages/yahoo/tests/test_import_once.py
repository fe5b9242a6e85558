"""yfinance is imported once, before worker threads, and never by merely importing the adapter.

Importing yfinance from two threads at once fails in yfinance 1.7 (``cannot
import name 'YfData' from partially initialized module 'yfinance.data'``): the
poller's quote and news threads hit it. Each check runs in a fresh interpreter,
since an import race can only happen once per process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

RACE = """
import sys, threading
errors = []
barrier = threading.Barrier(2)

def run(fn):
    barrier.wait()
    try:
        fn()
    except Exception as exc:
        errors.append(repr(exc))

{setup}
threads = [threading.Thread(target=run, args=(fn,)) for fn in (first, second)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
sys.exit(1 if errors else 0)
"""


def run_race(setup: str) -> subprocess.CompletedProcess[str]:
    code = RACE.format(setup=textwrap.dedent(setup))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_two_threads_loading_through_the_adapter_do_not_race() -> None:
    result = run_race(
        """
        from tickerhub_yahoo.client import load
        def first():
            load().data.YfData  # what the quote thread uses
        def second():
            load().Ticker  # what the news / history thread uses
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_race_is_real_without_the_adapter() -> None:
    """The control: the same harness catches the bug the adapter avoids.

    If this starts passing cleanly, yfinance fixed its import cycle; the adapter's
    lock stays harmless, but this test should then be dropped.
    """
    result = run_race(
        """
        def first():
            from yfinance.data import YfData
        def second():
            import yfinance
            yfinance.Ticker
        """
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "partially initialized module" in result.stdout or "KeyError" in result.stdout


def test_importing_the_adapter_does_not_load_yfinance() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tickerhub_yahoo, tickerhub_yahoo.client, tickerhub_yahoo.testing;"
            "print(sorted(m for m in ('yfinance', 'pandas') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
