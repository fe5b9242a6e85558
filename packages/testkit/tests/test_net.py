"""free_port: distinct ports, out of the range outgoing connections take theirs from."""

from __future__ import annotations

import socket

import pytest

from tickerhub_testkit.net import _ephemeral_low, free_port


def test_ports_are_never_handed_out_twice_and_are_bindable() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    for port in ports[:20]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_ports_come_from_below_the_ephemeral_range_when_it_is_known() -> None:
    low = _ephemeral_low()
    ports = [free_port() for _ in range(50)]
    if low is not None and low > 12_000:
        assert all(10_000 <= port < low for port in ports), (low, ports)


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from tickerhub_testkit import net

    if (net._ephemeral_low() or 0) <= 12_000:
        pytest.skip("no known ephemeral range here: ports come from port 0")
    port = free_port()
    net._given.discard(port)  # not handed out: only the listener below stands in the way
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        picks = iter([port])
        real = net.random.randrange
        monkeypatch.setattr(net.random, "randrange", lambda a, b: next(picks, None) or real(a, b))
        assert free_port() != port
