"""The progress line on stderr: rewritten in place on a terminal, throttled in a log."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def line(self, text: str, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        elif force or now - self.last >= 2:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self.last = now

    def done(self, text: str) -> None:
        if self.quiet:
            return
        sys.stderr.write(("\r\033[K" if self.tty else "") + text + "\n")
        sys.stderr.flush()
