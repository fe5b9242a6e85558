"""REDIS_SENTINELS / REDIS_SENTINEL_MASTER: what is accepted, what is refused (and how it
is said), and which client the factory builds from them. No Redis needed here; the
client against real sentinels is in test_sentinel_client.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tickerhub_core.redis_client import (
    CONNECT_TIMEOUT,
    HEALTH_CHECK_INTERVAL,
    SENTINEL_TIMEOUT,
    WaitingPool,
    WaitingSentinelPool,
    redis_client,
)
from tickerhub_core.settings import CommonSettings, load_settings


def sentinel_settings(**overrides: object) -> CommonSettings:
    values: dict[str, object] = {
        "redis_sentinels": "s1:26379, s2:26380,[::1]:26381",
        "redis_sentinel_master": "tickerhub",
        **overrides,
    }
    return CommonSettings(**values)  # type: ignore[arg-type]


def refused(**overrides: object) -> tuple[str, str]:
    """The (setting, message) of the one error ``overrides`` cause."""
    with pytest.raises(ValidationError) as info:
        CommonSettings(**overrides)  # type: ignore[arg-type]
    errors = info.value.errors()
    assert len(errors) == 1, errors
    return str(errors[0]["loc"][0]), errors[0]["msg"]


def test_sentinels_are_parsed_into_addresses() -> None:
    settings = sentinel_settings()
    assert settings.sentinel_addresses == [("s1", 26379), ("s2", 26380), ("::1", 26381)]
    assert settings.redis_sentinel_master == "tickerhub"


def test_no_sentinels_by_default() -> None:
    settings = CommonSettings()
    assert settings.redis_sentinels == []
    assert settings.sentinel_addresses == []
    assert settings.redis_sentinel_master == ""


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "sentinel-1:26379,sentinel-2:26379")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "mymaster")
    settings = CommonSettings()
    assert settings.sentinel_addresses == [("sentinel-1", 26379), ("sentinel-2", 26379)]


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("sentinel-1", "is not host:port"),
        (":26379", "is not host:port"),
        ("sentinel-1:", "port must be a number"),
        ("sentinel-1:abc", "port must be a number"),
        ("sentinel-1:0", "port must be a number from 1 to 65535"),
        ("sentinel-1:65536", "port must be a number from 1 to 65535"),
        ("redis://sentinel-1:26379", "is not host:port"),
        ("bad host:26379", "is not host:port"),
    ],
)
def test_a_bad_address_is_refused_by_name(item: str, says: str) -> None:
    setting, message = refused(redis_sentinels=f"ok:26379,{item}", redis_sentinel_master="m")
    assert setting == "redis_sentinels"
    assert says in message
    assert repr(item.strip()) in message


def test_the_master_is_required_with_sentinels() -> None:
    setting, message = refused(redis_sentinels="s1:26379")
    assert setting == "redis_sentinel_master"
    assert "required when REDIS_SENTINELS is set" in message


def test_a_master_without_sentinels_is_refused() -> None:
    setting, message = refused(redis_sentinel_master="tickerhub")
    assert setting == "redis_sentinel_master"
    assert "REDIS_SENTINELS is empty" in message


def test_a_master_name_with_spaces_is_refused() -> None:
    setting, message = refused(redis_sentinels="s1:26379", redis_sentinel_master="my master")
    assert setting == "redis_sentinel_master"
    assert "one word" in message


def test_a_sentinel_password_without_sentinels_is_refused() -> None:
    setting, message = refused(redis_sentinel_password="secret")
    assert setting == "redis_sentinel_password"
    assert "REDIS_SENTINELS is empty" in message
    assert "secret" not in message


async def test_the_sentinel_password_goes_to_the_sentinels_only() -> None:
    settings = sentinel_settings(
        redis_url="redis://:redis-secret@ignored.invalid:1/0",
        redis_sentinel_password="sentinel-secret",
    )
    assert "sentinel-secret" not in repr(settings)
    client = redis_client(settings)
    try:
        pool = client.connection_pool
        assert isinstance(pool, WaitingSentinelPool)
        assert pool.connection_kwargs["password"] == "redis-secret"
        sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
        assert {s["password"] for s in sentinels} == {"sentinel-secret"}
    finally:
        await client.aclose()


def test_sentinels_cannot_follow_a_unix_socket_url() -> None:
    setting, message = refused(
        redis_url="unix:///run/redis.sock", redis_sentinels="s1:26379", redis_sentinel_master="m"
    )
    assert setting == "redis_sentinels"
    assert "unix://" in message


def test_the_operator_reads_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "s1:26379")
    with pytest.raises(SystemExit) as exited:
        load_settings(CommonSettings, "poller")
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "poller: invalid setting REDIS_SENTINEL_MASTER: required when REDIS_SENTINELS is set "
        "(the name the sentinels monitor)"
    )


async def test_without_sentinels_the_client_goes_to_redis_url() -> None:
    client = redis_client(CommonSettings(redis_url="redis://db.invalid:6380/2"))
    try:
        assert type(client.connection_pool) is WaitingPool
    finally:
        await client.aclose()


async def test_with_sentinels_the_client_follows_the_named_master() -> None:
    settings = sentinel_settings(
        redis_url="rediss://user:secret@ignored.invalid:1/3?ssl_cert_reqs=none",
        redis_max_connections=7,
        redis_pool_timeout=1.5,
    )
    client = redis_client(settings, socket_timeout=7.5)
    try:
        pool = client.connection_pool
        assert isinstance(pool, WaitingSentinelPool)
        assert pool.service_name == "tickerhub"
        assert pool.is_master
        # The waiting pool's bound and wait, as without sentinels.
        assert (pool.max_connections, pool.timeout) == (7, 1.5)
        kwargs = pool.connection_kwargs
        # Credentials, db and TLS from REDIS_URL; its host and port are not used.
        assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("user", "secret", 3)
        assert "host" not in kwargs
        assert "port" not in kwargs
        assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
        assert kwargs["ssl_cert_reqs"] == "none"
        assert kwargs["socket_connect_timeout"] == CONNECT_TIMEOUT
        assert kwargs["socket_timeout"] == 7.5
        assert kwargs["health_check_interval"] == HEALTH_CHECK_INTERVAL
        assert kwargs.get("decode_responses", False) is False
        sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
        assert [(s["host"], s["port"]) for s in sentinels] == [
            ("s1", 26379),
            ("s2", 26380),
            ("::1", 26381),
        ]
        assert all(s["socket_timeout"] == SENTINEL_TIMEOUT for s in sentinels)
        assert all(s["password"] is None for s in sentinels)  # no REDIS_SENTINEL_PASSWORD
    finally:
        await client.aclose()


async def test_the_probe_pool_size_applies_with_sentinels_too() -> None:
    client = redis_client(sentinel_settings(), max_connections=2)
    try:
        assert client.connection_pool.max_connections == 2
        assert client.connection_pool.connection_class.__name__ == "SentinelManagedConnection"
    finally:
        await client.aclose()
