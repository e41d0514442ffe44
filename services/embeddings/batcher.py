"""Batches every input waiting for one model into padded onnxruntime runs.

Calls put their rows in one queue; a worker takes the oldest rows (up to `max_batch_size`), sorts them by
length and cuts them into runs (see `plan`), so short rows are padded to a long one's width only where one
run costs less than two. While a run is under way new rows pile up and go together into the next, which batches
concurrent calls without waiting on a timer. Runs happen on one thread per model (onnxruntime releases the
GIL), so the gRPC event loop never blocks on the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ingot.common.errors import ResourceExhausted, Unavailable
from services.embeddings.model import EmbeddingModel

log = logging.getLogger(__name__)


@dataclass
class Row:
    ids: Sequence[int]
    future: asyncio.Future


def plan(lengths: Sequence[int], max_batch_tokens: int, run_overhead_tokens: int = 0) -> list[list[int]]:
    """Indices of rows grouped into runs that cost least, where a run of n rows padded to width w costs
    `run_overhead_tokens + n * w` and must keep n * w within `max_batch_tokens` (a longer row runs alone).

    Over rows sorted by length the best runs are contiguous, so a small dynamic programme finds them: one
    run for rows of similar length, separate runs where padding a short row to a long one costs more than
    the fixed cost of another run.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    widths = [lengths[i] for i in order]
    best = [0] + [float("inf")] * len(order)
    start_of = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        # Sorted ascending, so the last row sets the run's width.
        width = widths[end - 1]
        for start in range(end - 1, -1, -1):
            rows = end - start
            if rows > 1 and rows * width > max_batch_tokens:
                break
            cost = best[start] + run_overhead_tokens + rows * width
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    runs: list[list[int]] = []
    end = len(order)
    while end:
        runs.append(order[start_of[end]:end])
        end = start_of[end]
    return runs[::-1]


class Batcher:
    def __init__(self, model: EmbeddingModel, *, max_batch_size: int, max_batch_tokens: int,
                 max_queued: int, run_overhead_tokens: int = 0) -> None:
        self.model = model
        self._max_batch_size = max_batch_size
        self._max_batch_tokens = max_batch_tokens
        self._run_overhead_tokens = run_overhead_tokens
        self._max_queued = max_queued
        self._queue: deque[Row] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{model.id}")
        self._worker: asyncio.Task | None = None
        self._closing = False

    async def embed(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """One vector per row, in order. Cancelling the caller drops its rows that have not run yet."""
        if self._closing and (self._worker is None or self._worker.done()):
            raise Unavailable(f"The model '{self.model.id}' was unloaded; retry to load it again.")
        if len(self._queue) + len(rows) > self._max_queued:
            raise ResourceExhausted(f"The embeddings queue for '{self.model.id}' is full ({len(self._queue)} inputs "
                                    "waiting); retry shortly.")
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"batcher {self.model.id}")
        loop = asyncio.get_running_loop()
        pending = [Row(ids, loop.create_future()) for ids in rows]
        self._queue.extend(pending)
        self._wake.set()
        try:
            return np.stack(await asyncio.gather(*(row.future for row in pending)))
        finally:
            for row in pending:
                row.future.cancel()

    async def close(self) -> None:
        """Lets every queued row finish, then stops the worker and its thread."""
        self._closing = True
        self._wake.set()
        if self._worker is not None:
            await self._worker
        self._executor.shutdown(wait=True)

    def _take(self) -> list[Row]:
        batch: list[Row] = []
        while self._queue and len(batch) < self._max_batch_size:
            row = self._queue.popleft()
            if not row.future.done():
                batch.append(row)
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while batch := self._take():
                try:
                    vectors = await loop.run_in_executor(self._executor, self._run, [row.ids for row in batch])
                except Exception as exc:  # noqa: BLE001 - the callers get the error; the worker goes on
                    log.exception("embedding run for %s failed", self.model.id)
                    for row in batch:
                        if not row.future.done():
                            row.future.set_exception(exc)
                    continue
                for row, vector in zip(batch, vectors, strict=True):
                    if not row.future.done():
                        row.future.set_result(vector)
            # Nothing awaits between the empty queue and here, so no row can slip in unserved.
            if self._closing:
                return
            await self._wake.wait()
            self._wake.clear()

    def _run(self, rows: list[Sequence[int]]) -> np.ndarray:
        out = np.empty((len(rows), self.model.config.dimensions), dtype=np.float32)
        for run in plan([len(ids) for ids in rows], self._max_batch_tokens, self._run_overhead_tokens):
            out[run] = self.model.run([rows[i] for i in run])
            self.model.batches += 1
        self.model.embedded_inputs += len(rows)
        return out
