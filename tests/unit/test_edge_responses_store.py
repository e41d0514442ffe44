"""The SQLite response store: owners, deletion, the TTL, the cap, and a second opening of the same file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.responses.store import SQLiteStore, StoredResponse
from ingot.common.errors import Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _record(response_id: str, owner: str = "a", created_at: float = 1_000.0) -> StoredResponse:
    return StoredResponse(id=response_id, owner=owner, created_at=created_at,
                          response={"id": response_id, "output": [{"type": "message", "id": "msg_out"}]},
                          input_items=[{"type": "message", "id": "msg_in"}])


async def test_a_response_is_found_by_its_owner_only_and_continues_from_input_then_output(tmp_path: Path):
    store = SQLiteStore(tmp_path / "r.sqlite3", ttl_s=60, max_entries=10)
    await store.put(_record("resp_1"))
    found = await store.get("a", "resp_1")
    assert found == _record("resp_1")
    assert [item["id"] for item in found.conversation] == ["msg_in", "msg_out"]
    assert await store.get("b", "resp_1") is None
    assert not await store.delete("b", "resp_1")
    assert await store.delete("a", "resp_1") and await store.get("a", "resp_1") is None
    await store.close()


async def test_a_response_expires_after_its_ttl(tmp_path: Path):
    clock = Clock()
    store = SQLiteStore(tmp_path / "r.sqlite3", ttl_s=30, max_entries=10, clock=clock)
    await store.put(_record("resp_1"))
    clock.now += 29
    assert await store.get("a", "resp_1") is not None
    clock.now += 2
    assert await store.get("a", "resp_1") is None and not await store.delete("a", "resp_1")
    # Expired rows are purged on the next write, not kept forever.
    await store.put(_record("resp_2", created_at=clock.now))
    assert store.count() == 1
    await store.close()


async def test_past_the_cap_the_oldest_responses_go_first(tmp_path: Path):
    store = SQLiteStore(tmp_path / "r.sqlite3", ttl_s=60, max_entries=2)
    for index in range(4):
        await store.put(_record(f"resp_{index}", created_at=1_000.0 + index))
    assert store.count() == 2
    assert [await store.get("a", f"resp_{index}") is not None for index in range(4)] == [False, False, True, True]
    await store.close()


async def test_the_file_keeps_responses_for_the_next_store_that_opens_it(tmp_path: Path):
    path = tmp_path / "nested" / "r.sqlite3"
    first = SQLiteStore(path, ttl_s=60, max_entries=10)
    assert not path.exists()
    await first.put(_record("resp_1"))
    await first.close()
    second = SQLiteStore(path, ttl_s=60, max_entries=10)
    assert (await second.get("a", "resp_1")).response["id"] == "resp_1"
    await second.close()


async def test_a_store_that_cannot_be_opened_is_a_503_to_retry(tmp_path: Path):
    # A directory where the file should be: sqlite cannot open it.
    (tmp_path / "r.sqlite3").mkdir()
    store = SQLiteStore(tmp_path / "r.sqlite3", ttl_s=60, max_entries=10)
    with pytest.raises(Unavailable):
        await store.get("a", "resp_1")
