"""Symbols on demand: the Redis side, shared by the api (asks) and the poller (polls).

Three keys (``docs/protocol.md``, *Symbols on demand*):

* ``interest`` (ZSET): symbol -> epoch ms it was last asked for or watched. The api
  adds and refreshes members; the poller polls the members asked for within
  ``INTEREST_TTL`` and forgets the others once their quote is removed.
* ``interest:unknown`` (ZSET): symbol -> epoch ms until which the source is taken not
  to know it (the poller records it after a ``NoDataError`` on the symbol's first poll).
* ``interest:config`` (HASH, expires): ``room`` (how many on-demand symbols the poller
  takes: ``MAX_SYMBOLS`` minus its ``TICKERS``) and ``ttl`` (ms), rewritten by an
  on-demand poller every second with a :data:`CONFIG_TTL` expiry. The api's capacity
  check uses its numbers, and while it is missing (no poller with ``ON_DEMAND=true``
  runs) nothing is registered: nobody would poll it.

Every time is Redis's ``TIME``, so api and poller hosts need not agree on the clock,
and the capacity check and the registration are one script: two api processes can
never both take the last free place.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from tickerhub_core.keys import RedisKeys

_NOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

CONFIG_TTL = 10.0  # seconds interest:config outlives the poller's last refresh

# KEYS: interest, interest:unknown, interest:config. ARGV: flag/symbol pairs; flag 'a'
# (ask: the hub does not hold it) or 't' (touch: held, refreshed only if it is an
# on-demand symbol). Returns one Outcome code per pair (4 for all: no on-demand poller).
REGISTER_LUA = (
    _NOW_LUA
    + """
local cfg = redis.call('HMGET', KEYS[3], 'room', 'ttl')
local out = {}
if not cfg[1] or not cfg[2] then
  for i = 1, #ARGV, 2 do out[#out + 1] = 4 end
  return out
end
local room = tonumber(cfg[1])
local ttl = tonumber(cfg[2])
local live = redis.call('ZCOUNT', KEYS[1], now - ttl, '+inf')
for i = 1, #ARGV, 2 do
  local flag, sym = ARGV[i], ARGV[i + 1]
  local score = redis.call('ZSCORE', KEYS[1], sym)
  local gone = redis.call('ZSCORE', KEYS[2], sym)
  local code = 1
  if gone and tonumber(gone) > now then
    code = 2
  elseif score and tonumber(score) >= now - ttl then
    redis.call('ZADD', KEYS[1], now, sym)
  elseif flag == 't' and not score then
    code = 0
  elseif live >= room then
    code = 3
  else
    redis.call('ZADD', KEYS[1], now, sym)
    live = live + 1
  end
  out[#out + 1] = code
end
return out
"""
)

# KEYS: interest, interest:unknown, interest:config. ARGV: room, ttl ms, config ttl ms,
# then the symbols the source just said it does not know. Records those (for ttl), drops
# expired unknown records, states the config and returns {now, members with scores}.
SYNC_LUA = (
    _NOW_LUA
    + """
local ttl = tonumber(ARGV[2])
for i = 4, #ARGV do
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[i])
  redis.call('ZREM', KEYS[1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('HSET', KEYS[3], 'room', ARGV[1], 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {now, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
"""
)

# KEYS: interest, then (optionally) one bars key per symbol. ARGV: cutoff ms, symbols.
# Forgets the symbols still not asked for since the cutoff (one asked again meanwhile
# stays: it will be polled again), with their bars when their keys were given.
FORGET_LUA = """
local n = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    if KEYS[i] then redis.call('DEL', KEYS[i]) end
    n = n + 1
  end
end
return n
"""


class Outcome(enum.IntEnum):
    """What a registration found, per symbol."""

    NOT_ON_DEMAND = 0  # a touch of a held symbol that is not on demand (TICKERS, another producer)
    OK = 1  # registered or refreshed: the poller polls it
    UNKNOWN = 2  # the source does not know it (recorded recently)
    CAPACITY = 3  # MAX_SYMBOLS are polled already
    NO_POLLER = 4  # no poller with ON_DEMAND=true runs (interest:config is missing)


@dataclass(frozen=True, slots=True)
class Interest:
    """The ``interest`` set as one sync read it, with Redis's clock."""

    now_ms: int
    scores: dict[str, int]  # symbol -> epoch ms last asked for


class InterestStore:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._register = redis.register_script(REGISTER_LUA)
        self._sync = redis.register_script(SYNC_LUA)
        self._forget = redis.register_script(FORGET_LUA)

    @property
    def _all_keys(self) -> list[str]:
        keys = self._keys
        return [keys.interest, keys.interest_unknown, keys.interest_config]

    async def register(self, asks: Sequence[str], touches: Sequence[str]) -> dict[str, Outcome]:
        """Ask for ``asks`` (not held) and refresh ``touches`` (held) in one atomic step."""
        args: list[str] = []
        order = [*asks, *touches]
        for symbol in asks:
            args += ("a", symbol)
        for symbol in touches:
            args += ("t", symbol)
        if not order:
            return {}
        codes = await self._register(keys=self._all_keys, args=args)
        return {symbol: Outcome(int(code)) for symbol, code in zip(order, codes, strict=True)}

    async def sync(self, room: int, ttl_ms: int, unknown: Iterable[str] = ()) -> Interest:
        """The poller's one call per refresh: record ``unknown``, state the config, read
        every member."""
        args: list[str | int] = [room, ttl_ms, int(CONFIG_TTL * 1000), *unknown]
        now, flat = await self._sync(keys=self._all_keys, args=args)
        return Interest(int(now), _pairs(flat))

    async def forget(self, symbols: Iterable[str], cutoff_ms: int, bars: bool = True) -> int:
        """Drop ``symbols`` last asked for before ``cutoff_ms`` (their quotes are gone),
        with their 1-minute bars unless ``bars`` is false (a symbol of TICKERS)."""
        names = list(symbols)
        if not names:
            return 0
        keys = [self._keys.interest]
        if bars:
            keys += [self._keys.bars(s) for s in names]
        return int(await self._forget(keys=keys, args=[cutoff_ms, *names]))


def _pairs(flat: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(flat), 2):
        member = flat[i]
        symbol = member.decode() if isinstance(member, bytes) else str(member)
        out[symbol] = int(float(flat[i + 1]))
    return out
