"""Client message parsing: every good shape and every kind of bad input."""

from __future__ import annotations

import pytest

from tickerhub_api.stream.protocol import (
    BAD_JSON,
    BAD_MESSAGE,
    BAD_SYMBOL,
    BAD_TYPE,
    TOO_MANY_SYMBOLS,
    BarsOption,
    ClientMessage,
    Command,
    Ping,
    ProtocolError,
    parse_message,
)


def parse(text: str, max_symbols: int = 5) -> ClientMessage:
    return parse_message(text, max_symbols)


@pytest.mark.parametrize("text", ["ping", " ping\n"])
def test_ping(text: str) -> None:
    assert parse(text) == Ping()


@pytest.mark.parametrize("action", ["watchlist", "subscribe", "unsubscribe"])
def test_actions_normalize_and_dedupe(action: str) -> None:
    cmd = parse(f'{{"{action}": ["aapl", " MSFT ", "AAPL", "brk-b", "^gspc"]}}')
    assert cmd == Command(action, ("AAPL", "MSFT", "BRK-B", "^GSPC"))  # type: ignore[arg-type]


def test_empty_list_is_allowed() -> None:
    assert parse('{"watchlist": []}') == Command("watchlist", ())


def test_null_watchlist_means_everything() -> None:
    assert parse('{"watchlist": null}') == Command("watchlist", None)


def test_max_symbols_counts_the_list() -> None:
    assert parse('{"watchlist": ["A","B","C"]}', max_symbols=3) == Command(
        "watchlist", ("A", "B", "C")
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", BAD_JSON),
        ("PING", BAD_JSON),
        ("pong", BAD_JSON),
        ("{not json", BAD_JSON),
        ('{"watchlist": ["AAPL"]', BAD_JSON),
        ("[]", BAD_MESSAGE),
        ('["AAPL"]', BAD_MESSAGE),
        ('"AAPL"', BAD_MESSAGE),
        ("42", BAD_MESSAGE),
        ("null", BAD_MESSAGE),
        ("{}", BAD_MESSAGE),
        ('{"type": "subscribe", "symbol": "AAPL"}', BAD_MESSAGE),
        ('{"watchlist": ["AAPL"], "subscribe": ["MSFT"]}', BAD_MESSAGE),
        ('{"watchlist": ["AAPL"], "extra": 1}', BAD_MESSAGE),
        ('{"watchlist": "AAPL"}', BAD_TYPE),
        ('{"watchlist": {"AAPL": 1}}', BAD_TYPE),
        ('{"watchlist": [1, 2]}', BAD_TYPE),
        ('{"watchlist": [["AAPL"]]}', BAD_TYPE),
        ('{"watchlist": ["AAPL", null]}', BAD_TYPE),
        ('{"subscribe": null}', BAD_TYPE),
        ('{"unsubscribe": null}', BAD_TYPE),
        ('{"subscribe": 7}', BAD_TYPE),
        ('{"watchlist": [""]}', BAD_SYMBOL),
        ('{"watchlist": ["AA PL"]}', BAD_SYMBOL),
        ('{"watchlist": ["prices:*"]}', BAD_SYMBOL),
        ('{"watchlist": ["AA\\nPL"]}', BAD_SYMBOL),
        ('{"watchlist": ["ABCDEFGHIJKLMNOPQRSTUVWXYZ"]}', BAD_SYMBOL),
        ('{"subscribe": ["../etc"]}', BAD_SYMBOL),
        ('{"watchlist": ["A","B","C","D","E","F"]}', TOO_MANY_SYMBOLS),
    ],
)
def test_bad_input(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(text)
    assert info.value.code == code
    assert info.value.message


def test_bad_symbol_message_names_it_briefly() -> None:
    with pytest.raises(ProtocolError) as info:
        parse('{"watchlist": ["AAPL", "no way", "' + "x" * 500 + '"]}')
    assert "'no way'" in info.value.message
    assert len(info.value.message) < 200


def test_duplicates_do_not_count_against_the_symbol_limit() -> None:
    # The limit in this module's parse() is 5 symbols.
    command = parse('{"watchlist": ["a", "A", "b", "B", "c", "C", "d", "D", "e", "E"]}')
    assert isinstance(command, Command)
    assert command.symbols == ("A", "B", "C", "D", "E")


def test_bars_option() -> None:
    assert parse('{"bars": true}') == BarsOption(True)
    assert parse('{"bars": false}') == BarsOption(False)
    with pytest.raises(ProtocolError) as info:
        parse('{"bars": 1}')
    assert info.value.code == "bad_type"
    with pytest.raises(ProtocolError) as info:
        parse('{"bars": true, "watchlist": []}')
    assert info.value.code == "bad_message"
