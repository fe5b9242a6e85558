"""Redis operations on the snapshot and the news list, shared by every producer and reader.

Writes go through Lua scripts so that "write the snapshot, bump the sequence,
publish the diff" is one atomic step: a reader that loads ``(seq, snapshot)``
in one transaction and then applies diffs with a higher ``seq`` is never wrong.
The scripts are the public write interface described in ``docs/protocol.md``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from tickerhub_core import wire
from tickerhub_core.keys import RedisKeys
from tickerhub_core.models import NewsItem, Quote

# A new epoch: an opaque id that differs from every earlier one of this key. Lua
# in Redis has no usable randomness (math.random is reseeded identically for
# every script run), so it is a hash of the server's clock in microseconds, the
# seq and the previous epoch: unique per reset, unpredictable enough for an id.
_NEW_EPOCH_LUA = """
local function new_epoch(seq, old)
  local t = redis.call('TIME')
  return string.sub(redis.sha1hex(t[1] .. '.' .. t[2] .. ':' .. seq .. ':' .. (old or '')), 1, 16)
end
"""

# KEYS: prices hash, seq key, epoch key[, field-seqs hash]. ARGV: channel,
# expected current seq, message, then symbol/quote-JSON pairs. Compare-and-set on
# the sequence keeps concurrent producers (or a producer racing a Redis restart)
# from interleaving wrongly. The epoch is created when missing (a fresh or wiped
# Redis), in the same step as the seq it goes with. Producers written before
# epochs pass two KEYS: the epoch is then left alone (readers create it).
#
# The field-seqs hash (fourth key, optional) records, per symbol, the seq of the
# diff that last changed each field, read from the message's ``data`` (every field
# a diff carries changed). ``@last`` is the last diff recorded; when it is not the
# one before this (a producer that does not pass the key published meanwhile, or
# the hash is new) the record restarts, and ``@floor`` says from which seq it is
# complete. Readers trust it only for resumes from ``@floor`` on and only while
# ``@last`` is the current seq.
_FIELD_SEQS_LUA = """
local function record_fields(key, seq, message)
  if redis.call('HGET', key, '@last') ~= tostring(seq - 1) then
    redis.call('DEL', key)
    redis.call('HSET', key, '@floor', seq - 1)
  end
  local ok, decoded = pcall(cjson.decode, message)
  local data = ok and type(decoded) == 'table' and decoded['data'] or nil
  if type(data) ~= 'table' then
    -- Nothing to learn which fields changed from: complete only from here on.
    redis.call('DEL', key)
    redis.call('HSET', key, '@floor', seq)
  else
    for symbol, fields in pairs(data) do
      if type(symbol) == 'string' and string.sub(symbol, 1, 1) ~= '@'
          and type(fields) == 'table' then
        local raw = redis.call('HGET', key, symbol)
        local known = raw and cjson.decode(raw) or {}
        for field, _ in pairs(fields) do
          if type(field) == 'string' then known[field] = seq end
        end
        redis.call('HSET', key, symbol, cjson.encode(known))
      end
    end
  end
  redis.call('HSET', key, '@last', seq)
end
"""

PUBLISH_DIFF_LUA = (
    _NEW_EPOCH_LUA
    + _FIELD_SEQS_LUA
    + """
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur ~= tonumber(ARGV[2]) then return {0, cur} end
local seq = redis.call('INCR', KEYS[2])
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], new_epoch(seq, nil))
end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if KEYS[4] then record_fields(KEYS[4], seq, ARGV[3]) end
redis.call('PUBLISH', ARGV[1], ARGV[3])
return {1, seq}
"""
)

# KEYS: prices hash, seq key, epoch key[, field-seqs hash]. ARGV: channel, new seq, reset message,
# then pairs. Used when Redis lost the snapshot (restart without persistence) or
# a producer must replace it wholesale; readers reload on the ``reset`` message.
# Always a new epoch: the history before a reset cannot be resumed from.
RESET_LUA = (
    _NEW_EPOCH_LUA
    + """
redis.call('DEL', KEYS[1])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[2], ARGV[2])
if KEYS[3] then redis.call('SET', KEYS[3], new_epoch(ARGV[2], redis.call('GET', KEYS[3]))) end
if KEYS[4] then
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[4], '@floor', ARGV[2], '@last', ARGV[2])
end
redis.call('PUBLISH', ARGV[1], ARGV[3])
return tonumber(ARGV[2])
"""
)

# KEYS: news zset, news items hash. ARGV: channel, max items, then id/score/JSON
# triples. Adds unseen ids only, trims to the newest ``max`` and publishes the
# new items in one message. An item older than everything kept in a full list
# is skipped, so a trimmed story that Yahoo still lists is not re-announced.
# It also keeps a per-symbol index (KEYS[1]..':sym:'..SYMBOL, from each item's
# "tickers") in step, so readers filtering by symbol read only what they return;
# KEYS[1]..':indexed' says the index covers everything kept (a store written
# before the index existed is indexed on the first call).
ADD_NEWS_LUA = """
local base = KEYS[1]
local function each_ticker(item, fn)
  local ok, decoded = pcall(cjson.decode, item)
  if ok and type(decoded) == 'table' and type(decoded.tickers) == 'table' then
    for _, t in ipairs(decoded.tickers) do
      if type(t) == 'string' then fn(base .. ':sym:' .. t) end
    end
  end
end
if redis.call('EXISTS', base .. ':indexed') == 0 then
  local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local item = redis.call('HGET', KEYS[2], all[i])
    if item then
      each_ticker(item, function(key) redis.call('ZADD', key, all[i + 1], all[i]) end)
    end
  end
  redis.call('SET', base .. ':indexed', '1')
end
local max = tonumber(ARGV[2])
local new = {}
for i = 3, #ARGV, 3 do
  local id, score, item = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local skip = false
  if redis.call('ZCARD', KEYS[1]) >= max then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    if oldest[2] and score <= tonumber(oldest[2]) then skip = true end
  end
  if not skip and redis.call('HSETNX', KEYS[2], id, item) == 1 then
    redis.call('ZADD', KEYS[1], score, id)
    each_ticker(item, function(key) redis.call('ZADD', key, score, id) end)
    new[#new + 1] = item
  end
end
local excess = redis.call('ZCARD', KEYS[1]) - max
if excess > 0 then
  local old = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
  for _, id in ipairs(old) do
    local item = redis.call('HGET', KEYS[2], id)
    if item then each_ticker(item, function(key) redis.call('ZREM', key, id) end) end
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
  redis.call('HDEL', KEYS[2], unpack(old))
end
if #new > 0 then
  redis.call('PUBLISH', ARGV[1], '{"type":"news","data":[' .. table.concat(new, ',') .. ']}')
end
return new
"""


# KEYS: bars seq key, then one bars ZSET per bar. ARGV: channel, max bars per symbol,
# then per bar: minute start (epoch s), oldest start to keep, bar JSON. Replaces
# each bar's previous revision, trims each ZSET to the bar's day and to ``max``,
# bumps the sequence and publishes every bar in one ``bars`` message.
PUBLISH_BARS_LUA = """
local max = tonumber(ARGV[2])
local seq = redis.call('INCR', KEYS[1])
local bars = {}
for i = 3, #ARGV, 3 do
  local key, t, oldest, bar = KEYS[(i - 3) / 3 + 2], ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('ZREMRANGEBYSCORE', key, t, t)
  redis.call('ZADD', key, t, bar)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. oldest)
  local excess = redis.call('ZCARD', key) - max
  if excess > 0 then redis.call('ZREMRANGEBYRANK', key, 0, excess - 1) end
  bars[#bars + 1] = bar
end
redis.call('PUBLISH', ARGV[1],
  '{"type":"bars","seq":' .. seq .. ',"data":[' .. table.concat(bars, ',') .. ']}')
return seq
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole snapshot as one transaction read it: ``seq``, ``epoch`` and quotes match."""

    seq: int
    epoch: str
    quotes: dict[str, Quote]
    fields: FieldSeqs | None = None  # None: no usable record (see FieldSeqs)


@dataclass(frozen=True, slots=True)
class FieldSeqs:
    """Per symbol, the seq of the diff that last changed each field; complete for
    every diff after ``floor`` (a resume from before it cannot use it)."""

    floor: int
    symbols: dict[str, dict[str, int]]

    @classmethod
    def parse(cls, raw: Mapping[bytes | str, bytes | str], seq: int) -> FieldSeqs | None:
        """The record as ``prices:fields`` holds it at ``seq``, if it covers that seq."""
        entries = {_text(k): v for k, v in raw.items()}
        floor, last = entries.pop("@floor", None), entries.pop("@last", None)
        try:
            if floor is None or last is None or int(last) != seq:
                return None  # a diff after the last one recorded was not recorded
            decoded = ((symbol, wire.loads(value)) for symbol, value in entries.items())
            # An entry that is not an object is left out: its quote is then sent whole.
            symbols = {symbol: seqs for symbol, seqs in decoded if isinstance(seqs, dict)}
            return cls(int(floor), symbols)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class PublishResult:
    ok: bool
    seq: int  # the new seq when ok, else the seq Redis holds


class SnapshotStore:
    """The ``prices`` hash and its sequence number."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._publish = redis.register_script(PUBLISH_DIFF_LUA)
        self._reset = redis.register_script(RESET_LUA)

    async def load(self) -> tuple[int, dict[str, Quote]]:
        """``(seq, {symbol: quote})`` read in one transaction, so they match."""
        snapshot = await self.load_snapshot()
        return snapshot.seq, snapshot.quotes

    async def load_snapshot(self, fields: bool = True) -> Snapshot:
        """Seq, epoch and quotes in one transaction. An epoch missing (an empty Redis, or
        data written before epochs) is created in that same transaction. ``fields``: read
        the field record too (a mirror that answers resumes wants it; REST does not)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.prices_epoch, secrets.token_hex(8), nx=True)
            pipe.get(self._keys.prices_seq)
            pipe.get(self._keys.prices_epoch)
            pipe.hgetall(self._keys.prices)
            if fields:
                pipe.hgetall(self._keys.prices_fields)
            _, raw_seq, raw_epoch, raw, *raw_fields = await pipe.execute()
        seq = int(raw_seq) if raw_seq is not None else 0
        quotes = {_text(sym): wire.loads(value) for sym, value in raw.items()}
        record = FieldSeqs.parse(raw_fields[0], seq) if raw_fields else None
        return Snapshot(seq, _text(raw_epoch), quotes, record)

    async def load_seq(self) -> int:
        raw = await self._redis.get(self._keys.prices_seq)
        return int(raw) if raw is not None else 0

    async def beat(self, ttl: float) -> None:
        """Say this producer is alive: the heartbeat key, expiring after ``ttl`` seconds."""
        await self._redis.set(self._keys.producer_heartbeat, wire.now_ms(), px=int(ttl * 1000))

    async def last_beat(self) -> int | None:
        """Epoch ms of the producer's last heartbeat, or None if it has expired (or never was)."""
        raw = await self._redis.get(self._keys.producer_heartbeat)
        return int(raw) if raw is not None else None

    async def publish_diff(
        self, expected_seq: int, message: bytes, quotes: Mapping[str, bytes]
    ) -> PublishResult:
        """Write ``quotes`` (full quote JSON per symbol), bump seq, publish ``message``.

        Does nothing and returns ``ok=False`` when Redis's seq is not
        ``expected_seq``; the caller reloads and retries.
        """
        args: list[str | bytes | int] = [self._keys.prices_channel, expected_seq, message]
        for symbol, value in quotes.items():
            args += (symbol, value)
        ok, seq = await self._publish(keys=self._snapshot_keys, args=args)
        return PublishResult(bool(ok), int(seq))

    async def reset(self, seq: int, quotes: Mapping[str, bytes]) -> None:
        """Replace the whole snapshot at ``seq`` and tell readers to reload."""
        args: list[str | bytes | int] = [self._keys.prices_channel, seq, wire.reset_message(seq)]
        for symbol, value in quotes.items():
            args += (symbol, value)
        await self._reset(keys=self._snapshot_keys, args=args)

    @property
    def _snapshot_keys(self) -> list[str]:
        keys = self._keys
        return [keys.prices, keys.prices_seq, keys.prices_epoch, keys.prices_fields]


class BarStore:
    """1-minute bars: a ZSET per symbol (member = bar JSON, score = minute start)."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._publish = redis.register_script(PUBLISH_BARS_LUA)

    async def publish(self, bars: Iterable[tuple[str, int, int, bytes]], max_bars: int) -> int:
        """Store and publish ``(symbol, minute start, oldest start kept, bar JSON)``
        tuples in one atomic step; returns the new ``bars:seq`` (0: nothing to do)."""
        keys: list[str] = [self._keys.bars_seq]
        args: list[str | bytes | int] = [self._keys.bars_channel, max_bars]
        for symbol, t, oldest, bar in bars:
            keys.append(self._keys.bars(symbol))
            args += (t, oldest, bar)
        if len(keys) == 1:
            return 0
        return int(await self._publish(keys=keys, args=args))

    async def recent(self, symbol: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` newest bars of ``symbol``, oldest first."""
        # Without withscores, zrange returns members only (redis-py types every shape).
        raw = cast("list[bytes]", await self._redis.zrange(self._keys.bars(symbol), -limit, -1))
        return [wire.loads(r) for r in raw]

    async def load_all(self, symbols: Iterable[str]) -> list[dict[str, Any]]:
        """Every stored bar of ``symbols`` (a producer's restart)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for symbol in symbols:
                pipe.zrange(self._keys.bars(symbol), 0, -1)
            results = cast("list[list[bytes]]", await pipe.execute())
        return [wire.loads(r) for raw in results for r in raw]


class NewsStore:
    """Recent news: a ZSET of ids by publish time plus a hash of item JSON."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._add = redis.register_script(ADD_NEWS_LUA)

    async def add(self, items: Iterable[NewsItem], max_items: int) -> list[NewsItem]:
        """Store unseen items, trim to ``max_items``, publish and return the new ones."""
        args: list[str | bytes | int | float] = [self._keys.news_channel, max_items]
        for item in items:
            args += (item["id"], _epoch(item["published_at"]), wire.dumps(item))
        if len(args) == 2:
            return []
        new = await self._add(keys=[self._keys.news, self._keys.news_items], args=args)
        return [wire.loads(raw) for raw in new]

    async def restore(self, items: Iterable[NewsItem], max_items: int) -> int:
        """Write ``items`` back after Redis lost them, without announcing them as new: the
        script publishes on a channel nobody reads, then one ``{"type": "reset"}`` on the
        news channel tells readers to reload. Returns how many were stored again."""
        args: list[str | bytes | int | float] = [f"{self._keys.news_channel}:restore", max_items]
        for item in items:
            args += (item["id"], _epoch(item["published_at"]), wire.dumps(item))
        if len(args) == 2:
            return 0
        new = await self._add(keys=[self._keys.news, self._keys.news_items], args=args)
        if new:
            await self._redis.publish(self._keys.news_channel, b'{"type":"reset"}')
        return len(new)

    async def recent(self, limit: int, symbols: Iterable[str] | None = None) -> list[NewsItem]:
        """Newest first; with ``symbols``, only items related to one of them.

        Filtered reads cost what they return: at most ``limit`` ids per symbol from
        the per-symbol index, merged; never every stored item (issue 14).
        """
        ids: list[bytes] | None
        if symbols is None:
            # Without withscores, zrevrange returns members only (redis-py types every shape).
            ids = cast("list[bytes]", await self._redis.zrevrange(self._keys.news, 0, limit - 1))
        else:
            wanted = list(symbols)
            if not wanted:
                return []
            ids = await self._indexed_ids(limit, wanted)
            if ids is None:  # nothing was added since the index was introduced
                return await self._scan(limit, wanted)
        if not ids:
            return []
        raw = await self._redis.hmget(self._keys.news_items, ids)
        return [wire.loads(r) for r in raw if r is not None]

    async def _indexed_ids(self, limit: int, symbols: list[str]) -> list[bytes] | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(self._keys.news_indexed)
            for symbol in symbols:
                pipe.zrevrange(self._keys.news_symbol(symbol), 0, limit - 1, withscores=True)
            indexed, *per_symbol = await pipe.execute()
        if not indexed:
            return None
        scores: dict[bytes, float] = {}
        for rows in per_symbol:
            for member, score in rows:
                scores[member] = score
        # The order ZREVRANGE on the whole list gives: score, then id, descending.
        newest = sorted(scores.items(), key=lambda row: (row[1], row[0]), reverse=True)
        return [member for member, _ in newest[:limit]]

    async def _scan(self, limit: int, symbols: list[str]) -> list[NewsItem]:
        ids = cast("list[bytes]", await self._redis.zrevrange(self._keys.news, 0, -1))
        if not ids:
            return []
        raw = await self._redis.hmget(self._keys.news_items, ids)
        wanted = set(symbols)
        items = [wire.loads(r) for r in raw if r is not None]
        return [i for i in items if wanted.intersection(i["tickers"])][:limit]

    async def since(
        self, item_id: str, limit: int, symbols: Iterable[str] | None = None
    ) -> list[NewsItem] | None:
        """The items published after ``item_id`` (newest first, at most ``limit``; with
        ``symbols`` only those related to one of them), or ``None`` when that item is
        no longer kept (trimmed, or Redis lost the list): the caller sends everything.

        "After" is by publish time, the list's order; items published at the same
        second as ``item_id`` are included (clients de-duplicate by id).
        """
        score = await self._redis.zscore(self._keys.news, item_id)
        if score is None:
            return None
        newer = cast(
            list[bytes], await self._redis.zrevrangebyscore(self._keys.news, "+inf", score)
        )
        ids = [i for i in newer if _text(i) != item_id]
        if not ids:
            return []
        raw = await self._redis.hmget(self._keys.news_items, ids)
        items: list[NewsItem] = [wire.loads(r) for r in raw if r is not None]
        if symbols is not None:
            wanted = set(symbols)
            items = [i for i in items if wanted.intersection(i.get("tickers") or ())]
        return items[:limit]


class YahooRateLimit:
    """The shared "Yahoo is rate-limiting this host" flag: a key that expires.

    The poller and the api's history route ask Yahoo from the same address, so
    a 429 seen by one means the other must hold off too. Whoever sees it
    :meth:`mark`s it for its backoff; both check :meth:`remaining` before asking.
    """

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._key = keys.yahoo_rate_limited

    async def mark(self, seconds: float) -> None:
        """Yahoo answered 429: hold off for ``seconds`` (never shortens a longer hold)."""
        ms = max(1, int(seconds * 1000))
        # SET ... GT needs Redis 7.0; this keeps the longer of two holds on any version.
        if await self._redis.set(self._key, wire.now_ms() + ms, px=ms, nx=True):
            return
        if (await self._redis.pttl(self._key)) < ms:
            await self._redis.set(self._key, wire.now_ms() + ms, px=ms)

    async def remaining(self) -> float:
        """Seconds until Yahoo may be asked again; 0 if nobody saw a 429 lately."""
        ttl = await self._redis.pttl(self._key)
        return ttl / 1000 if ttl > 0 else 0.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
