"""Limits that hold across edge replicas: a deployment's requests per minute and an API key's requests in
flight, counted in one Redis that every edge names with --redis-url.

Each check is one Lua script, so two edges checking at once cannot both take the last slot, and time is
Redis's own clock, so edges whose clocks differ still share one window. An edge counts its own requests in
flight per key in a hash field of its own; an edge that dies stops renewing its heartbeat and its counts
stop counting. API keys are stored only as hashes.

Redis going away never fails a request: each check then raises StoreDown, the caller falls back to its own
per-process limit, a warning is logged once, and Redis is tried again a few seconds later. A Redis that
comes back empty (restarted) gets this edge's counts again from its heartbeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

PREFIX = "ingot:limits:"
WINDOW_MS = 60_000
# An edge renews its heartbeat this often; one silent for HEARTBEAT_TTL_MS is taken for dead.
HEARTBEAT_S = 2.0
HEARTBEAT_TTL_MS = 10_000
# A key's counts vanish this long after its last request started (every edge that counted it is gone).
IN_FLIGHT_TTL_MS = 3_600_000
# After a failure, Redis is left alone this long: requests meanwhile do not each wait for a timeout.
RETRY_AFTER_OUTAGE_S = 5.0
# A check waits at most this long for Redis before the request falls back to the per-process limit.
TIMEOUT_S = 0.5

# KEYS[1]: the deployment's window (a sorted set of admissions by time). ARGV: limit, window ms, member.
# Returns -1 when admitted, else the milliseconds until the oldest admission leaves the window.
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""

# KEYS[1]: one key's requests in flight, a hash of edge id -> count. KEYS[2]: edge id -> heartbeat
# deadline (ms). ARGV: limit, this edge's id, ms the hash outlives its last use. Returns 1 when admitted.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #counts, 2 do
  local edge = counts[i]
  local deadline = tonumber(redis.call('HGET', KEYS[2], edge) or '0')
  if edge == ARGV[2] or deadline > now then
    total = total + tonumber(counts[i + 1])
  else
    redis.call('HDEL', KEYS[1], edge)
  end
end
if total >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_RELEASE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

# KEYS[1]: the heartbeat hash. ARGV: this edge's id, ttl ms. Returns 1 when this edge was not known (Redis
# is new or lost its data), so the edge writes its counts again.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('HEXISTS', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
for _, edge in ipairs(redis.call('HKEYS', KEYS[1])) do
  if tonumber(redis.call('HGET', KEYS[1], edge)) <= now then
    redis.call('HDEL', KEYS[1], edge)
  end
end
return 1 - known
"""


class StoreDown(Exception):
    """Redis cannot answer now; the caller applies its per-process limit instead."""


def _key_hash(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()[:32]


class SharedLimits:
    """Admission checks against Redis for one edge process; open only inside a running event loop."""

    def __init__(self, url: str, local_counts: Callable[[], dict[str, int]] | None = None) -> None:
        self.url = url
        self._redis = redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        self._rate = self._redis.register_script(_RATE)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self.edge_id = uuid.uuid4().hex
        self._admissions = 0
        self._down_until = 0.0
        self._down = False
        # This edge's requests in flight by credential, the truth its Redis counts are rebuilt from.
        self.local_counts = local_counts or dict
        # Credential hashes this edge has a count under in Redis.
        self._written: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._beat: asyncio.Task | None = None

    def _edges(self) -> str:
        return PREFIX + "edges"

    async def _call(self, script, keys: list[str], args: list[object]) -> int:
        if time.monotonic() < self._down_until:
            raise StoreDown
        try:
            result = int(await script(keys=keys, args=args))
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as error:
            self._down_until = time.monotonic() + RETRY_AFTER_OUTAGE_S
            if not self._down:
                self._down = True
                log.warning("Redis at %s is unreachable (%s): rate limits and per-key concurrency are counted "
                            "per edge process until it answers again", self.url, error)
            raise StoreDown from None
        except RedisError as error:
            # A Redis that answers but refuses (out of memory, read-only replica) is down for limits too.
            self._down_until = time.monotonic() + RETRY_AFTER_OUTAGE_S
            if not self._down:
                self._down = True
                log.warning("Redis at %s refused a limit check (%s): limits are per edge process for now",
                            self.url, error)
            raise StoreDown from None
        if self._down:
            self._down = False
            log.warning("Redis at %s answers again: limits are shared across edge replicas again", self.url)
        return result

    async def admit_rate(self, deployment: str, per_minute: int) -> int | None:
        """None when admitted; otherwise the seconds until the window has room. Raises StoreDown."""
        self._admissions += 1
        member = f"{self.edge_id}:{self._admissions}"
        wait_ms = await self._call(self._rate, [PREFIX + "rpm:" + deployment.casefold()],
                                   [per_minute, WINDOW_MS, member])
        if wait_ms < 0:
            return None
        return max(1, -(-wait_ms // 1000))

    async def acquire(self, credential: str, per_key: int) -> bool:
        """Whether one more request of this credential fits its limit, taking the slot if so. Raises
        StoreDown."""
        keys = [PREFIX + "inflight:" + _key_hash(credential), self._edges()]
        admitted = bool(await self._call(self._acquire, keys, [per_key, self.edge_id, IN_FLIGHT_TTL_MS]))
        if admitted:
            self._written.add(_key_hash(credential))
        return admitted

    def release_soon(self, credential: str) -> None:
        """Frees the slot in the background: it runs even when the request's task is being cancelled."""
        task = asyncio.get_running_loop().create_task(self._release_slot(credential))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_slot(self, credential: str) -> None:
        try:
            await self._call(self._release, [PREFIX + "inflight:" + _key_hash(credential)], [self.edge_id])
        except StoreDown:
            # The heartbeat writes this edge's counts again once Redis is back.
            pass

    async def _rewrite_counts(self) -> None:
        """This edge's counts as they are: after Redis lost them, or missed releases while it was away."""
        counts = {_key_hash(credential): count for credential, count in self.local_counts().items() if count}
        pipe = self._redis.pipeline(transaction=False)
        for hashed in self._written - counts.keys():
            pipe.hdel(PREFIX + "inflight:" + hashed, self.edge_id)
        for hashed, count in counts.items():
            pipe.hset(PREFIX + "inflight:" + hashed, self.edge_id, count)
            pipe.pexpire(PREFIX + "inflight:" + hashed, IN_FLIGHT_TTL_MS)
        try:
            await pipe.execute()
        except (RedisError, OSError) as error:
            raise StoreDown from error
        self._written = set(counts)

    async def _beat_forever(self) -> None:
        stale = False
        while True:
            try:
                fresh = await self._call(self._heartbeat, [self._edges()], [self.edge_id, HEARTBEAT_TTL_MS])
                if fresh or stale:
                    await self._rewrite_counts()
                stale = False
            except StoreDown:
                stale = True
            await asyncio.sleep(HEARTBEAT_S)

    def start(self) -> None:
        self._beat = asyncio.get_running_loop().create_task(self._beat_forever())

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()
