"""``tickerhub watch AAPL MSFT``: a live terminal table of quotes (needs the ``cli`` extra).

Ctrl-C exits 0. A bad key exits 1 with the server's reason instead of retrying.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tickerhub_client.client import PricesClient, canonical_symbols
from tickerhub_client.errors import ConnectionRejected
from tickerhub_client.events import Connected, Diff, Error, Event, Reconnecting, Snapshot

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

DEFAULT_URL = "ws://localhost:8000"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tickerhub", description="TickerHub from a terminal.")
    commands = parser.add_subparsers(dest="command", required=True)
    watch = commands.add_parser("watch", help="a live-updating table of quotes (Ctrl-C quits)")
    watch.add_argument("symbols", nargs="+", help="ticker symbols, e.g. AAPL MSFT ^GSPC")
    watch.add_argument(
        "--url",
        default=os.environ.get("TICKERHUB_URL", DEFAULT_URL),
        help=f"the hub (env TICKERHUB_URL; default {DEFAULT_URL})",
    )
    watch.add_argument(
        "--key",
        default=os.environ.get("TICKERHUB_API_KEY"),
        help="API key, sent as X-API-Key (env TICKERHUB_API_KEY keeps it out of `ps`)",
    )
    watch.add_argument(
        "--max-rate",
        type=float,
        default=None,
        metavar="N",
        help="at most N updates a second from the server (0.1-100; default: as they come)",
    )
    watch.add_argument(
        "--once", action="store_true", help="print the table once the quotes arrived and exit"
    )
    args = parser.parse_args(argv)
    try:
        args.symbols = canonical_symbols(args.symbols)
    except ValueError as exc:
        parser.error(str(exc))
    if args.max_rate is not None and not 0.1 <= args.max_rate <= 100:
        parser.error("--max-rate must be from 0.1 to 100 (updates per second)")
    return args


def cells(quote: Mapping[str, Any] | None) -> tuple[str, str, str, str]:
    """Price, change, change % (with an arrow) and time of a quote, as rich markup."""
    if quote is None:
        return ("[dim]…[/]", "", "", "")
    price, change, percent = quote.get("price"), quote.get("change"), quote.get("change_percent")
    digits = 4 if isinstance(price, int | float) and abs(price) < 1 else 2
    price_text = "—" if price is None else f"{price:,.{digits}f}"
    style, arrow = "dim", " "
    if isinstance(percent, int | float) and percent > 0:
        style, arrow = "green", "▲"
    elif isinstance(percent, int | float) and percent < 0:
        style, arrow = "red", "▼"
    change_text = "" if change is None else f"[{style}]{change:+,.{digits}f}[/]"
    percent_text = "" if percent is None else f"[{style}]{arrow} {percent:+.2f}%[/]"
    when = quote.get("market_time") or ""
    time_text = when[11:19] if len(when) >= 19 else when  # HH:MM:SS of the UTC ISO time
    if quote.get("stale"):
        time_text += " [yellow](stale)[/]"
    return (price_text, change_text, percent_text, time_text)


def render(symbols: Sequence[str], quotes: Mapping[str, Mapping[str, Any]], status: str) -> Table:
    from rich.table import Table

    table = Table(caption=status, caption_justify="left")
    table.add_column("Symbol", style="bold")
    table.add_column("Price", justify="right")
    table.add_column("Change", justify="right")
    table.add_column("Change %", justify="right")
    table.add_column("Time (UTC)")
    for symbol in symbols:
        table.add_row(symbol, *cells(quotes.get(symbol)))
    return table


def status_line(event: Event, client: PricesClient, previous: str) -> str:
    """The caption under the table: connection state, seq, the last error."""
    if isinstance(event, Reconnecting):
        why = f"{event.code} {event.reason}" if event.code else event.reason
        return f"[yellow]reconnecting in {event.delay:.1f} s[/] ({why})"
    if isinstance(event, Error):
        error = f"[red]{event.code}: {event.message}[/]"
        return f"[green]●[/] {client.url} · seq {client.seq} · {error}"
    if isinstance(event, Connected | Snapshot | Diff) and "[red]" not in previous:
        return f"[green]●[/] {client.url} · seq {client.seq}"
    if isinstance(event, Snapshot):  # a fresh watchlist reply clears the last error
        return f"[green]●[/] {client.url} · seq {client.seq}"
    return previous


async def watch(args: argparse.Namespace, console: Console) -> int:
    from rich.live import Live

    status = f"connecting to {args.url} …"
    async with PricesClient(
        args.url, symbols=args.symbols, api_key=args.key, max_rate=args.max_rate
    ) as client:
        if args.once:
            async for event in client:
                # The snapshot that states the watchlist holds every watched quote.
                if isinstance(event, Snapshot) and client.view.watchlist is not None:
                    console.print(render(args.symbols, client.quotes, f"seq {client.seq}"))
                    return 0
                if isinstance(event, Error):
                    console.print(f"[red]{event.code}: {event.message}[/]")
            return 1
        # Redrawn at most 10 times a second, however fast the diffs come.
        with Live(render(args.symbols, {}, status), console=console, refresh_per_second=10) as live:
            async for event in client:
                status = status_line(event, client, status)
                live.update(render(args.symbols, client.quotes, status))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from rich.console import Console
    except ImportError:
        print("tickerhub watch needs rich: pip install 'tickerhub-client[cli]'", file=sys.stderr)
        return 2
    console = Console()
    try:
        return asyncio.run(watch(args, console))
    except KeyboardInterrupt:
        return 0
    except ConnectionRejected as exc:
        Console(stderr=True).print(f"[red]tickerhub: {exc}[/]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
