"""Pure helpers of the client: reconnect delays, URLs, symbols."""

from __future__ import annotations

import pytest

from tickerhub_client import Backoff, PricesClient, base_url, canonical_symbols


def test_backoff_grows_to_its_cap_with_jitter_in_the_upper_half() -> None:
    backoff = Backoff(initial=0.5, factor=2, maximum=8)
    assert [backoff.delay(n, lambda: 1.0) for n in range(1, 7)] == [0.5, 1, 2, 4, 8, 8]
    assert [backoff.delay(n, lambda: 0.0) for n in range(1, 7)] == [0.25, 0.5, 1, 2, 4, 4]
    assert backoff.delay(10_000) <= 8  # no float overflow after a day of retries
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=0)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://localhost:8000", "ws://localhost:8000"),
        ("http://localhost:8000/", "ws://localhost:8000"),
        ("https://hub.example.com/ws/prices", "wss://hub.example.com"),
        ("wss://hub.example.com/tickerhub/ws/news", "wss://hub.example.com/tickerhub"),
    ],
)
def test_base_url(url: str, expected: str) -> None:
    assert base_url(url) == expected


def test_base_url_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="ws://"):
        base_url("ftp://x")


def test_symbols_are_canonical_and_checked() -> None:
    assert canonical_symbols(["aapl", " msft", "AAPL", "^gspc", "eurusd=x"]) == [
        "AAPL",
        "MSFT",
        "^GSPC",
        "EURUSD=X",
    ]
    with pytest.raises(ValueError, match="no way"):
        canonical_symbols(["no way"])
    with pytest.raises(TypeError):
        canonical_symbols("AAPL")


def test_resume_parameters_only_once_the_server_gave_an_epoch() -> None:
    client = PricesClient("ws://h:1", symbols=["AAPL", "BRK-B"])
    assert client._url() == "ws://h:1/ws/prices?symbols=AAPL,BRK-B"
    client.view.apply({"type": "snapshot", "seq": 7, "data": {}})
    assert "since" not in client._url()  # no epoch: a server before resume cannot resume
    client.view.apply({"type": "snapshot", "seq": 9, "data": {}, "epoch": "e 1"})
    assert client._url() == "ws://h:1/ws/prices?symbols=AAPL,BRK-B&since=9&epoch=e+1&fields=changed"
    assert "since" not in PricesClient("ws://h:1", resume=False)._url()


def test_max_rate_goes_on_the_url() -> None:
    assert PricesClient("ws://h:1", max_rate=2)._url() == "ws://h:1/ws/prices?max_rate=2"
    assert PricesClient("ws://h:1", max_rate=0.5)._url() == "ws://h:1/ws/prices?max_rate=0.5"
    assert PricesClient("ws://h:1")._url() == "ws://h:1/ws/prices"
