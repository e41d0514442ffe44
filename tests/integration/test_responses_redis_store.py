"""The Redis response store against a real redis-server: owners, deletion, Redis' own expiry and the cap."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.responses.store import RedisStore, StoredResponse
from ingot.common.errors import Unavailable
from tests.e2e.mesh import free_port
from tests.redisserver import redis_server


def _record(response_id: str, owner: str = "a", created_at: float = 1_000.0) -> StoredResponse:
    return StoredResponse(id=response_id, owner=owner, created_at=created_at, response={"id": response_id,
                                                                                         "output": []},
                          input_items=[])


async def test_owners_deletion_expiry_and_the_cap(tmp_path: Path):
    with redis_server(tmp_path) as url:
        store = RedisStore(url, ttl_s=60, max_entries=2, clock=lambda: 1_000.0)
        await store.put(_record("resp_1"))
        assert (await store.get("a", "resp_1")).id == "resp_1"
        assert await store.get("b", "resp_1") is None and not await store.delete("b", "resp_1")
        assert await store.delete("a", "resp_1") and await store.get("a", "resp_1") is None
        for index in range(4):
            await store.put(_record(f"resp_{index}", created_at=1_000.0 + index))
        assert [await store.get("a", f"resp_{index}") is not None for index in range(4)] == [False, False, True, True]
        short = RedisStore(url, ttl_s=0.3, max_entries=10)
        await short.put(_record("resp_short"))
        assert await short.get("a", "resp_short") is not None
        await asyncio.sleep(0.5)
        assert await short.get("a", "resp_short") is None
        await store.close()
        await short.close()


async def test_an_unreachable_redis_is_a_503_to_retry():
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60, max_entries=10)
    with pytest.raises(Unavailable):
        await store.get("a", "resp_1")
    await store.close()
