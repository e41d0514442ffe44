"""Where stored responses live: one interface, SQLite on one host, Redis for several edge replicas.

A stored response is its body, its resolved input items (the whole conversation before it), the owner
(a digest of the credential that made it) and when it expires. Every store forgets a response once its
TTL has passed and evicts the oldest once it holds more than its cap, so it never grows without bound.
An entry keeps the TTL it was written with; a shorter setting later applies to new entries.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from ingot.common.errors import Unavailable

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def _unavailable_on(*failures: type[Exception]):
    """A store that cannot be reached or written is a 503 the client may retry, not a 500 of unknown cause."""

    def wrap(method):
        @functools.wraps(method)
        async def guarded(self, *args, **kwargs):
            try:
                return await method(self, *args, **kwargs)
            except failures as error:
                log.warning("the response store failed: %s", error)
                raise Unavailable(f"The response store is unavailable ({type(error).__name__}); retry in a "
                                  "moment.") from None

        return guarded

    return wrap


@dataclass(frozen=True)
class StoredResponse:
    id: str
    owner: str
    created_at: float
    response: dict[str, Any]
    input_items: list[dict[str, Any]]

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "owner": self.owner, "created_at": self.created_at,
                           "response": self.response, "input_items": self.input_items})

    @classmethod
    def from_json(cls, text: str | bytes) -> StoredResponse:
        return cls(**json.loads(text))

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """What a response continuing this one starts from: its input, then its output."""
        return [*self.input_items, *self.response["output"]]


class ResponseStore(Protocol):
    async def put(self, record: StoredResponse) -> None: ...

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        """The response, unless it is unknown, expired or another owner's (all the same to a caller)."""

    async def delete(self, owner: str, response_id: str) -> bool: ...

    async def close(self) -> None: ...


class SQLiteStore:
    """One file, opened on first use (an edge that never stores a response never creates it). WAL mode, so
    a second edge process on the same host may share the file."""

    def __init__(self, path: Path, ttl_s: float, max_entries: int, clock: Clock = time.time) -> None:
        self.path, self.ttl_s, self.max_entries, self._clock = path, ttl_s, max_entries, clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                       "created_at REAL NOT NULL, expires_at REAL NOT NULL, body TEXT NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS responses_by_age ON responses (created_at)")
            db.execute("CREATE INDEX IF NOT EXISTS responses_by_expiry ON responses (expires_at)")
            self._db = db
        return self._db

    def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            return work(self._connection())

    @_unavailable_on(sqlite3.Error, OSError)
    async def put(self, record: StoredResponse) -> None:
        now = self._clock()

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                           (record.id, record.owner, record.created_at, now + self.ttl_s, record.to_json()))
                db.execute("DELETE FROM responses WHERE expires_at <= ?", (now,))
                db.execute("DELETE FROM responses WHERE id IN (SELECT id FROM responses ORDER BY created_at DESC, "
                           "rowid DESC LIMIT -1 OFFSET ?)", (self.max_entries,))

        await asyncio.to_thread(self._run, write)

    @_unavailable_on(sqlite3.Error, OSError)
    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        now = self._clock()
        row = await asyncio.to_thread(self._run, lambda db: db.execute(
            "SELECT body FROM responses WHERE id = ? AND owner = ? AND expires_at > ?",
            (response_id, owner, now)).fetchone())
        return StoredResponse.from_json(row[0]) if row else None

    @_unavailable_on(sqlite3.Error, OSError)
    async def delete(self, owner: str, response_id: str) -> bool:
        now = self._clock()
        deleted = await asyncio.to_thread(self._run, lambda db: db.execute(
            "DELETE FROM responses WHERE id = ? AND owner = ? AND expires_at > ?", (response_id, owner, now)).rowcount)
        return bool(deleted)

    def count(self) -> int:
        return self._run(lambda db: db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class RedisStore:
    """Each response under its own key with Redis' own expiry; a sorted set by age enforces the cap."""

    PREFIX = "ingot:responses:"
    INDEX = "ingot:responses-by-age"

    def __init__(self, url: str, ttl_s: float, max_entries: int, clock: Clock = time.time) -> None:
        self._redis = redis.from_url(url)
        self.ttl_s, self.max_entries, self._clock = ttl_s, max_entries, clock

    @_unavailable_on(RedisError)
    async def put(self, record: StoredResponse) -> None:
        now = self._clock()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.PREFIX + record.id, record.to_json(), px=max(1, int(self.ttl_s * 1000)))
            pipe.zadd(self.INDEX, {record.id: record.created_at})
            # Index entries whose responses Redis has expired already (none outlives the longest TTL written).
            pipe.zremrangebyscore(self.INDEX, "-inf", now - self.ttl_s)
            pipe.zcard(self.INDEX)
            *_, count = await pipe.execute()
        if count > self.max_entries:
            evicted = await self._redis.zpopmin(self.INDEX, count - self.max_entries)
            if evicted:
                await self._redis.delete(*(self.PREFIX + member.decode() for member, _ in evicted))

    @_unavailable_on(RedisError)
    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        text = await self._redis.get(self.PREFIX + response_id)
        if text is None:
            return None
        record = StoredResponse.from_json(text)
        return record if record.owner == owner else None

    @_unavailable_on(RedisError)
    async def delete(self, owner: str, response_id: str) -> bool:
        if await self.get(owner, response_id) is None:
            return False
        await self._redis.delete(self.PREFIX + response_id)
        await self._redis.zrem(self.INDEX, response_id)
        return True

    async def close(self) -> None:
        await self._redis.aclose()
