"""The batcher's run plan, and how it shares runs between concurrent calls (with a stand-in model that
records its runs; the real model's batching is checked in tests/integration/test_embeddings_service.py)."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from ingot.common.errors import ResourceExhausted, Unavailable
from services.embeddings.batcher import Batcher, plan


def covers(runs, n):
    return sorted(i for run in runs for i in run) == list(range(n))


def test_plan_keeps_each_run_within_the_token_budget():
    lengths = [10, 3, 50, 4, 12, 49]
    runs = plan(lengths, max_batch_tokens=100)
    assert covers(runs, 6)
    for run in runs:
        assert len(run) * max(lengths[i] for i in run) <= 100


def test_rows_of_similar_length_share_one_run():
    assert plan([30, 31, 29, 30] * 16, max_batch_tokens=16384, run_overhead_tokens=64) == [
        sorted(range(64), key=lambda i: ([30, 31, 29, 30] * 16)[i])]


def test_short_rows_are_not_padded_to_a_long_one_when_another_run_costs_less():
    lengths = [2] * 8 + [200]
    assert plan(lengths, max_batch_tokens=16384, run_overhead_tokens=64) == [list(range(8)), [8]]
    # With runs free of overhead every row would be its own run; with a huge overhead, one run for all.
    assert len(plan(lengths, max_batch_tokens=16384, run_overhead_tokens=0)) == 9
    assert len(plan(lengths, max_batch_tokens=16384, run_overhead_tokens=10_000)) == 1


def test_a_row_longer_than_the_budget_runs_alone():
    assert plan([500, 2], max_batch_tokens=100, run_overhead_tokens=64) == [[1], [0]]


class RecordingModel:
    """Vectors that encode their row (first id, length), and a gate that holds the first run."""

    def __init__(self) -> None:
        self.id = "stand-in"
        self.config = SimpleNamespace(dimensions=2)
        self.runs: list[int] = []
        self.batches = self.embedded_inputs = 0
        self.gate = threading.Event()

    def run(self, rows):
        self.gate.wait(5)
        self.runs.append(len(rows))
        return np.array([[row[0], len(row)] for row in rows], dtype=np.float32)


async def test_calls_that_arrive_during_a_run_share_the_next_one():
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_batch_tokens=10_000, max_queued=100, run_overhead_tokens=64)
    first = asyncio.create_task(batcher.embed([[1, 1]]))
    await asyncio.sleep(0.05)
    others = [asyncio.create_task(batcher.embed([[n] * n])) for n in range(2, 10)]
    await asyncio.sleep(0.05)
    model.gate.set()
    assert (await first).tolist() == [[1, 2]]
    for n, task in zip(range(2, 10), others):
        assert (await task).tolist() == [[n, n]]
    assert model.runs == [1, 8]
    await batcher.close()


async def test_a_cancelled_call_drops_its_rows_before_they_run():
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_batch_tokens=10_000, max_queued=100)
    first = asyncio.create_task(batcher.embed([[1]]))
    await asyncio.sleep(0.05)
    doomed = asyncio.create_task(batcher.embed([[2], [3]]))
    await asyncio.sleep(0.01)
    doomed.cancel()
    model.gate.set()
    await first
    assert (await batcher.embed([[4]])).tolist() == [[4, 1]]
    assert model.runs == [1, 1]
    await batcher.close()


async def test_a_full_queue_is_resource_exhausted():
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=1, max_batch_tokens=10_000, max_queued=2)
    running = asyncio.create_task(batcher.embed([[1]]))
    await asyncio.sleep(0.05)
    with pytest.raises(ResourceExhausted):
        await batcher.embed([[2], [3], [4]])
    model.gate.set()
    await running
    await batcher.close()


async def test_a_failed_run_fails_its_callers_and_the_next_call_still_runs():
    model = RecordingModel()
    model.gate.set()
    calls = 0
    real_run = model.run

    def flaky(rows):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return real_run(rows)

    model.run = flaky
    batcher = Batcher(model, max_batch_size=8, max_batch_tokens=10_000, max_queued=100)
    with pytest.raises(RuntimeError):
        await batcher.embed([[1]])
    assert (await batcher.embed([[5]])).tolist() == [[5, 1]]
    await batcher.close()


async def test_closing_finishes_a_run_under_way_and_then_refuses_new_rows():
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=8, max_batch_tokens=10_000, max_queued=100)
    running = asyncio.create_task(batcher.embed([[3]]))
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0.01)
    model.gate.set()
    assert (await running).tolist() == [[3, 1]]
    await closing
    with pytest.raises(Unavailable):
        await batcher.embed([[4]])
