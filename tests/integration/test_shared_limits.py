"""Limits shared through a real Redis: two edges' checks count together, a stopped Redis makes checks fall
back quickly with one warning, and a Redis that comes back empty gets the edges' counts again."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from edge.shared.sharedlimits import SharedLimits, StoreDown
from tests.redisserver import redis_server


async def _pair(url: str) -> tuple[SharedLimits, SharedLimits]:
    first, second = SharedLimits(url), SharedLimits(url)
    first.start()
    second.start()
    # Each edge's first heartbeat registers it before either counts anything.
    await asyncio.sleep(0.2)
    return first, second


async def test_two_edges_share_one_deployments_window(tmp_path):
    with redis_server(tmp_path) as url:
        first, second = await _pair(url)
        try:
            admitted = [await edge.admit_rate("Chat", 3) for edge in (first, second, first, second)]
            assert admitted[:3] == [None, None, None]
            assert 58 <= admitted[3] <= 60
            # Another deployment has its own window; names match whatever their case.
            assert await second.admit_rate("other", 1) is None
            assert await second.admit_rate("chat", 3) is not None
        finally:
            await asyncio.gather(first.close(), second.close())


async def test_in_flight_per_key_counts_across_edges_and_frees_on_release(tmp_path):
    with redis_server(tmp_path) as url:
        first, second = await _pair(url)
        try:
            assert await first.acquire("Bearer a", 2)
            assert await second.acquire("Bearer a", 2)
            assert not await first.acquire("Bearer a", 2)
            assert await second.acquire("Bearer b", 2)
            first.release_soon("Bearer a")
            await asyncio.sleep(0.1)
            assert await second.acquire("Bearer a", 2)
        finally:
            await asyncio.gather(first.close(), second.close())


async def test_a_stopped_redis_falls_back_at_once_with_one_warning(tmp_path, caplog):
    with redis_server(tmp_path) as url:
        edge = SharedLimits(url)
        assert await edge.admit_rate("d", 5) is None
    caplog.set_level(logging.WARNING, logger="edge.shared.sharedlimits")
    try:
        for _ in range(5):
            started = time.monotonic()
            with pytest.raises(StoreDown):
                await edge.admit_rate("d", 5)
            with pytest.raises(StoreDown):
                await edge.acquire("k", 1)
            assert time.monotonic() - started < 1.5
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        await edge.close()


async def test_a_redis_that_comes_back_empty_gets_the_counts_again(tmp_path, monkeypatch):
    monkeypatch.setattr("edge.shared.sharedlimits.HEARTBEAT_S", 0.1)
    with redis_server(tmp_path) as url:
        first, second = await _pair(url)
        try:
            assert await first.acquire("k", 1)
            first.local_counts = lambda: {"k": 1}
            await first._redis.flushall()
            # The next heartbeat finds this edge unknown and writes its request in flight back.
            await asyncio.sleep(0.5)
            assert not await second.acquire("k", 1)
        finally:
            await asyncio.gather(first.close(), second.close())
