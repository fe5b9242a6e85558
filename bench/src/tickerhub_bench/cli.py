"""Command line entry point (filled in below)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("tickerhub-bench: not implemented yet")
