"""TickerHub core: what the poller and the api share (no I/O at import time)."""

from tickerhub_core.keys import RedisKeys
from tickerhub_core.models import NewsItem, Quote
from tickerhub_core.symbols import InvalidSymbolError, normalize_symbol, parse_symbol_list

__all__ = [
    "InvalidSymbolError",
    "NewsItem",
    "Quote",
    "RedisKeys",
    "normalize_symbol",
    "parse_symbol_list",
]
