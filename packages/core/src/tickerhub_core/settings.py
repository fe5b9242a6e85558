"""Settings both services share. Each service subclasses :class:`CommonSettings`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tickerhub_core.keys import RedisKeys
from tickerhub_core.sentinel import check_master_name, check_sentinel_settings, parse_address

S = TypeVar("S", bound=BaseSettings)

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:\-]*$")


def split_list_setting(value: object) -> list[object]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; a list or tuple passes (items stripped).

    Non-string items are left for pydantic's ``list[str]`` check to reject.
    """
    if isinstance(value, str):
        items: list[object] = list(value.split(","))
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError("must be a comma-separated list")
    stripped = [item.strip() if isinstance(item, str) else item for item in items]
    return [item for item in stripped if item != ""]


# A list setting is written "A,B,C" in the environment, never JSON: NoDecode stops
# pydantic-settings from trying json.loads on it first (which fails with an
# unreadable error for "AAPL,MSFT"). Services refine the items with an "after"
# validator (e.g. symbols normalized).
ListSetting = Annotated[list[str], NoDecode, BeforeValidator(split_list_setting)]


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    redis_url: str = Field(default="redis://localhost:6379/0", description="Redis connection URL.")
    key_prefix: str = Field(
        default="", description="Prefix for every Redis key and channel name (e.g. 'hub1:')."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    redis_max_connections: int = Field(
        default=100,
        ge=2,
        description="Most Redis connections one process opens (its pool; the api's pub/sub "
        "reader holds one of them).",
    )
    redis_pool_timeout: float = Field(
        default=2.0,
        gt=0,
        description="Seconds a command waits for a free pooled connection when all are busy; "
        "past it the api answers 503 with Retry-After (overload, not an outage).",
    )
    # Sentinel: checked (and parsed into host/port pairs) by tickerhub_core.sentinel.
    redis_sentinels: ListSetting = Field(
        default_factory=list,
        description="Redis Sentinel addresses, 'host:port,host:port'; when set, the primary "
        "is found through them (REDIS_URL then gives only password, db and TLS).",
    )
    redis_sentinel_master: str = Field(
        default="",
        validate_default=True,
        description="The master name the sentinels monitor (required with REDIS_SENTINELS).",
    )
    redis_sentinel_password: SecretStr = Field(
        default=SecretStr(""),
        validate_default=True,
        description="The sentinels' own password (their 'requirepass'); empty: they ask for "
        "none. Redis's password stays in REDIS_URL.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one readable line per record; json: one JSON object per line "
        "(ts, level, logger, msg and the record's fields), for log collectors.",
    )

    # Symbols on demand (docs/protocol.md): both services read these; the poller states
    # its INTEREST_TTL (and MAX_SYMBOLS) in interest:config, which the api obeys.
    on_demand: bool = Field(
        default=True,
        description="Poll a valid symbol a client asks for that the hub does not hold; "
        "false: only TICKERS.",
    )
    interest_ttl: float = Field(
        default=600.0,
        gt=0,
        description="Seconds a symbol on demand stays polled after the last client watching "
        "(or asking for) it; then stale, and removed INTEREST_TTL later.",
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _check_sentinels(cls, value: list[str], info: ValidationInfo) -> list[str]:
        check_sentinel_settings(value, info.data.get("redis_url"))
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _check_sentinel_master(cls, value: str, info: ValidationInfo) -> str:
        if "redis_sentinels" not in info.data:
            return value  # REDIS_SENTINELS itself was refused: that error says enough
        return check_master_name(value.strip(), info.data["redis_sentinels"])

    @field_validator("redis_sentinel_password")
    @classmethod
    def _check_sentinel_password(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if value.get_secret_value() and not info.data.get("redis_sentinels"):
            raise ValueError("set, but REDIS_SENTINELS is empty (it is the sentinels' password)")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _PREFIX_RE.match(value) or len(value) > 64:
            raise ValueError("may only contain letters, digits and _ . : - (at most 64)")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``REDIS_SENTINELS`` as (host, port) pairs; empty: a plain Redis at ``REDIS_URL``."""
        return [parse_address(item) for item in self.redis_sentinels]

    @property
    def keys(self) -> RedisKeys:
        return RedisKeys(self.key_prefix)


def load_settings(cls: type[S], prog: str, **overrides: Any) -> S:
    """Build ``cls`` from env / ``.env``; on a bad value, exit with one line naming the setting.

    Operators read this line in ``docker compose logs``: it must say which
    variable is wrong and why, not print a pydantic traceback.
    """
    import sys

    from pydantic import ValidationError

    try:
        return cls(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            print(f"{prog}: invalid setting {name}: {msg}", file=sys.stderr)
        raise SystemExit(2) from None
