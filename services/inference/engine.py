"""The engine thread: the only thread that calls into onnxruntime-genai.

onnxruntime-genai's Generator holds the GIL in every call, so generation cannot run on the event loop and
two generator threads would not run in parallel anyway. One thread owns every loaded model and every live
sequence and steps the sequences in turn: one decode step (or one chunk of prefill) each per round. That
gives fairness between streams, cancellation between steps, and admission control in one place. Results
go back to each request's asyncio queue through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingot.common.errors import (FailedPrecondition, IngotError, Internal, InvalidArgument, ResourceExhausted,
                                 Unavailable)
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from services.inference import admission, lifetime, models
from services.inference.batch import Group, batch_key
from services.inference.promptcache import Entry, PromptCache
from services.inference.speculation import DraftPolicy
from services.inference.events import Event, Failed, Finished
from services.inference.logits import LogitsProcessor, LogprobEntry
from services.inference.sampling import Budget

log = logging.getLogger(__name__)

# How often an idle engine wakes to unload models whose TTL ran out.
_IDLE_TICK_S = 1.0


@dataclass(eq=False)
class Sequence:
    """One generation (a row of a batch group). Created on the event loop; after submit only the engine
    thread touches its state, except `cancelled`, a flag the loop sets and the engine reads between steps."""

    model_id: str
    prompt: list[int]
    search_options: dict[str, Any]
    budget: Budget
    emit: Callable[[Event], None]
    index: int = 0
    processor: LogitsProcessor | None = None
    # None: no logprobs; 0..20: each token's logprob with that many alternatives.
    top_logprobs: int | None = None
    # Score the prompt too (echo with logprobs): prefill goes token by token to see every position's logits.
    score_prompt: bool = False
    # ("json_schema" | "regex" | "lark_grammar", text): llguidance constrains every sampling step.
    guidance: tuple[str, str] | None = None
    # Let the grammar append the tokens it forces without sampling them (only where nothing needs logits).
    fast_forward: bool = False
    prompt_entries: list[LogprobEntry] = field(default_factory=list)
    cancelled: bool = False
    # Finished normally (its budget, a stop token, the context): only then may its generator be reused.
    completed: bool = False
    # Whether the prompt cache was asked for it yet (a held sequence is admitted more than once).
    looked_up: bool = False
    submitted_at: float = 0.0
    # Its detokenizer, made when its group starts.
    stream: Any = None
    generated: int = 0
    finished: bool = False
    model: models.LoadedModel | None = field(default=None, repr=False)

    def cancel(self) -> None:
        self.cancelled = True


def asyncio_emitter(loop: asyncio.AbstractEventLoop, sink: asyncio.Queue[Event]) -> Callable[[Event], None]:
    return lambda event: loop.call_soon_threadsafe(sink.put_nowait, event)


class Engine:
    def __init__(self, *, max_active: int, max_waiting: int, prefill_chunk: int, max_batch: int = 8,
                 batch_window: float = 0.0, default_ttl: int = 0, memory_budget_bytes: int = 0,
                 threads: models.CpuThreads | None = None, prompt_cache: PromptCache | None = None,
                 drafts: DraftPolicy | None = None) -> None:
        self._prompt_cache = PromptCache(max_entries=0, max_bytes=0, headroom=0) if prompt_cache is None \
            else prompt_cache
        self._drafts = DraftPolicy(enabled=False) if drafts is None else drafts
        self._threads = threads or models.CpuThreads.for_host()
        self._max_active = max_active
        self._max_batch = max_batch
        self._batch_window = batch_window
        self._max_waiting = max_waiting
        self._prefill_chunk = prefill_chunk
        self._default_ttl = default_ttl
        self._memory_budget = memory_budget_bytes
        self.device_id = 0
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._models: dict[str, models.LoadedModel] = {}
        self._loading: dict[str, concurrent.futures.Future[models.LoadedModel]] = {}
        self._waiting: deque[Sequence] = deque()
        self._groups: list[Group] = []
        # Sequences admitted and not yet retired, in all and per model; guarded because submit runs on the
        # loop thread. A model with claims is busy: neither its TTL nor the memory budget unloads it.
        self._admitted = 0
        self._claims: dict[str, int] = {}
        self._admitted_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ingot-engine", daemon=True)
        self._stopped = threading.Event()
        self._next_expiry_check = 0.0
        self._last_busy = 0.0

    # ----- called from the event loop -----
    def start(self) -> None:
        self._thread.start()

    def loaded(self) -> list[models.LoadedModel]:
        return list(self._models.values())

    async def ensure_loaded(self, info: registry_pb.ModelInfo, *, execution_provider: str = "",
                            ttl: int | None = None) -> models.LoadedModel:
        """The loaded model, loading it first if needed; a different execution provider reloads an idle one."""
        model = self._models.get(info.id)
        if model is not None and execution_provider and execution_provider != model.execution_provider:
            await self.unload(info.id, force=False)
            model = None
        if model is None:
            future = self._loading.get(info.id)
            if future is None:
                future = concurrent.futures.Future()
                self._loading[info.id] = future
                self._commands.put(("load", info, execution_provider, future))
            try:
                model = await asyncio.wrap_future(future)
            finally:
                self._loading.pop(info.id, None)
        if ttl is not None:
            model.ttl_seconds = ttl
        # A request on its way keeps the model from expiring or being evicted before it is admitted.
        model.touch()
        return model

    async def unload(self, model_id: str, *, force: bool) -> bool:
        """Unloads a model; False if it was not loaded. A busy model needs force, which fails its sequences."""
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._commands.put(("unload", model_id, force, future))
        return await asyncio.wrap_future(future)

    def set_device(self, device_id: int) -> None:
        if "cuda" not in models.available_providers():
            raise FailedPrecondition("This host has no GPU: models run on the CPU, so there is no device to set.",
                                     param="deviceId")
        if device_id < 0:
            raise InvalidArgument("A GPU device id is 0 or more.", param="deviceId")
        # Taken by the next load; a model already loaded stays on its device.
        self.device_id = device_id

    def submit(self, sequence: Sequence) -> None:
        with self._admitted_lock:
            if self._stopped.is_set():
                raise Unavailable("The inference service is shutting down.")
            if self._admitted >= self._max_active + self._max_waiting:
                raise ResourceExhausted(
                    f"The inference service is at capacity ({self._admitted} sequences); retry shortly.",
                    code="server_busy",
                )
            self._admitted += 1
            sequence.submitted_at = time.monotonic()
            self._claims[sequence.model_id] = self._claims.get(sequence.model_id, 0) + 1
        self._commands.put(("generate", sequence))

    def stop(self, timeout: float = 10.0) -> None:
        self._commands.put(("stop",))
        self._thread.join(timeout)

    # ----- the engine thread -----
    def _run(self) -> None:
        while True:
            now = time.monotonic()
            if self._groups or self._waiting:
                self._last_busy = now
            hold = self._admission_hold()
            idle = not self._groups and (not self._waiting or hold > 0)
            settle_in = admission.settle_in(now, self._last_busy, busy=bool(self._groups or self._waiting),
                                            unsettled=self._prompt_cache.unsettled() is not None)
            timeout = (hold or _IDLE_TICK_S) if idle else None
            if timeout is not None and settle_in is not None:
                timeout = min(timeout, settle_in)
            if not self._drain_commands(timeout=timeout):
                break
            if settle_in == 0 and not self._waiting:
                self._prompt_cache.settle(admission.SETTLE_CHUNK)
            if self._admission_hold() == 0:
                self._admit()
            # Round robin over groups: every stream moves one step per round, batched or not.
            for group in list(self._groups):
                self._step(group)
            self._expire()
            # Generator calls hold the GIL; yielding it once per round keeps the gRPC event loop responsive.
            time.sleep(0)
        self._shutdown()

    def _drain_commands(self, *, timeout: float | None) -> bool:
        """Handles queued commands; waits up to `timeout` for one when there is nothing else to do."""
        try:
            command = self._commands.get(timeout=timeout) if timeout else self._commands.get_nowait()
        except queue.Empty:
            return True
        while True:
            if command[0] == "stop":
                return False
            self._handle(command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return True

    def _busy(self) -> set[str]:
        with self._admitted_lock:
            return {model_id for model_id, claims in self._claims.items() if claims}

    def _handle(self, command: tuple[Any, ...]) -> None:
        kind = command[0]
        if kind == "generate":
            self._waiting.append(command[1])
        elif kind == "load":
            _, info, execution_provider, future = command
            try:
                future.set_result(self._load(info, execution_provider))
            except IngotError as error:
                future.set_exception(error)
            except Exception as exc:  # noqa: BLE001 - onnxruntime-genai raises plain RuntimeErrors
                log.exception("loading %s failed", info.id)
                future.set_exception(Internal(f"Loading the model '{info.id}' failed: {exc}"))
        elif kind == "unload":
            _, model_id, force, future = command
            try:
                future.set_result(self._unload(model_id, force=force))
            except IngotError as error:
                future.set_exception(error)

    def _load(self, info: registry_pb.ModelInfo, execution_provider: str) -> models.LoadedModel:
        if info.id in self._models:
            return self._models[info.id]
        victims = lifetime.evictions(list(self._models.values()), self._busy(), info.size_bytes, self._memory_budget)
        if victims is None:
            raise ResourceExhausted(
                f"Loading '{info.id}' needs {info.size_bytes // 2**20} MB, but the memory budget of "
                f"{self._memory_budget // 2**20} MB is held by models that are generating; retry shortly.",
                param="model", code="memory_budget_exceeded")
        for victim in victims:
            log.info("unloading %s (least recently used) to make room for %s within the %d MB memory budget",
                     victim.id, info.id, self._memory_budget // 2**20)
            self._forget(victim.id)
        started = time.perf_counter()
        model = models.load(info, execution_provider=execution_provider, device_id=self.device_id,
                            ttl_seconds=self._default_ttl, threads=self._threads)
        self._models[info.id] = model
        log.info("loaded %s from %s on %s (%d threads) in %.2f s", info.id, info.path, model.execution_provider,
                 self._threads.count, time.perf_counter() - started)
        return model

    def _unload(self, model_id: str, *, force: bool) -> bool:
        if model_id not in self._models:
            return False
        if model_id in self._busy():
            if not force:
                raise FailedPrecondition(
                    f"The model '{model_id}' is generating; unload it with force to stop those requests.",
                    param="model")
            for sequence in [s for s in (*self._live(), *self._waiting) if s.model_id == model_id]:
                if sequence in self._waiting:
                    self._waiting.remove(sequence)
                self._fail(sequence, Unavailable(f"The model '{model_id}' was unloaded.", param="model"))
            self._drop_finished_groups()
        self._forget(model_id)
        log.info("unloaded %s", model_id)
        return True

    def _expire(self) -> None:
        now = time.monotonic()
        if now < self._next_expiry_check:
            return
        self._next_expiry_check = now + _IDLE_TICK_S
        for model in lifetime.expired(list(self._models.values()), self._busy(), now):
            log.info("unloading %s: idle for its TTL of %d s", model.id, model.ttl_seconds)
            self._forget(model.id)

    def _forget(self, model_id: str) -> None:
        self._models.pop(model_id)
        self._prompt_cache.drop_model(model_id)
        self._drafts.forget(model_id)

    def _admission_hold(self) -> float:
        """Seconds to hold the waiting sequences back before admitting them; 0: admit now."""
        if not self._waiting or batch_key(self._waiting[0], self._prefill_chunk) is None:
            return 0.0
        # A request that reuses a cached prefix and runs alone would only be delayed by waiting for company.
        if self._runs_alone(self._waiting[0], crowded=len(self._waiting) > 1):
            return 0.0
        return self._hold(self._waiting)

    def _hold(self, rows: list[Sequence]) -> float:
        return admission.hold([row.submitted_at for row in rows], time.monotonic(), window=self._batch_window,
                              max_batch=self._max_batch)

    def _runs_alone(self, sequence: Sequence, *, crowded: bool) -> Entry | None:
        """The prompt cache entry `sequence` reuses running alone, or None (no hit, or it joins a batch)."""
        entry = self._prompt_cache.lookup(sequence)
        if entry is None or not admission.runs_alone(
                entry.reuse, batchable=batch_key(sequence, self._prefill_chunk) is not None,
                crowded=crowded or bool(self._groups)):
            return None
        return entry

    def _live(self) -> list[Sequence]:
        return [row for group in self._groups for row in group.live()]

    def _admit(self) -> None:
        """Moves waiting sequences into groups: compatible ones share a generator, up to max_batch rows. A
        full batch starts at once; the rest of a burst waits out its window for more."""
        room = self._max_active - len(self._live())
        batchable: dict[tuple, list[Sequence]] = {}
        while self._waiting and room > 0:
            sequence = self._waiting.popleft()
            if sequence.model_id not in self._models:
                self._fail(sequence, Unavailable(f"The model '{sequence.model_id}' was unloaded before this "
                                                 "request started; retry it.", param="model"))
                continue
            room -= 1
            entry = self._runs_alone(sequence, crowded=bool(self._waiting or batchable))
            if entry is not None:
                self._start_group([sequence], entry)
                continue
            self._prompt_cache.count_miss(sequence)
            key = batch_key(sequence, self._prefill_chunk)
            if key is None:
                self._start_group([sequence])
            else:
                batchable.setdefault(key, []).append(sequence)
        held: list[Sequence] = []
        for rows in batchable.values():
            for start in range(0, len(rows), self._max_batch):
                chunk = rows[start:start + self._max_batch]
                if self._hold(chunk) > 0:
                    held.extend(chunk)
                else:
                    self._start_group(chunk)
        self._waiting.extendleft(reversed(sorted(held, key=lambda s: s.submitted_at)))

    def _start_group(self, rows: list[Sequence], entry: Entry | None = None) -> None:
        model = self._models[rows[0].model_id]
        for sequence in rows:
            sequence.model = model
            model.active_sequences += 1
        group = Group(model, rows, self._prefill_chunk)
        if len(rows) == 1:
            sequence = rows[0]
            drafts = self._drafts.choose(sequence)
            if entry is not None:
                group.generator = self._prompt_cache.take(entry)
                group.prefilled, group.capacity, group.speculative = entry.reuse, entry.capacity, entry.speculative
                group.keep = True
            else:
                group.speculative = drafts
                if self._prompt_cache.cacheable(sequence):
                    context = model.info.context_length or group.max_length
                    group.capacity = max(group.max_length,
                                         min(context, group.max_length + self._prompt_cache.room(sequence)))
                    group.keep = True
        self._add_group(group)

    def _step(self, group: Group) -> None:
        for row in group.live():
            if row.cancelled:
                self._retire(row)
        if group.live():
            try:
                for row, reason in group.step():
                    self._finish(row, reason)
            except IngotError as error:
                for row in group.live():
                    self._fail(row, error)
            except Exception as exc:  # noqa: BLE001 - a failing group must not take the others down
                log.exception("generation failed for %s", group.model.id)
                for row in group.live():
                    self._fail(row, Internal(f"Generation failed: {exc}"))
        if not group.live():
            self._drop_group(group)

    def _add_group(self, group: Group) -> None:
        self._groups.append(group)
        group.model.batches += 1

    def _drop_group(self, group: Group) -> None:
        self._groups.remove(group)
        group.model.batches -= 1
        generator = group.generator
        if generator is not None and group.speculative:
            self._drafts.observe(group.model.id, generator.get_speculative_stats())
        if self._models.get(group.model.id) is group.model:
            self._prompt_cache.keep(group)
        group.close()

    def _drop_finished_groups(self) -> None:
        for group in [g for g in self._groups if not g.live()]:
            self._drop_group(group)

    # Retire before telling the caller: a client that sends its next request the moment this one ends must
    # find the slot free already.
    def _finish(self, sequence: Sequence, reason: int) -> None:
        # Decided here, not when the group is dropped: the caller cancels every sequence once it has read
        # the end (a no-op then), and may do so before this thread drops the group.
        sequence.completed = not sequence.cancelled
        self._retire(sequence)
        sequence.emit(Finished(sequence.index, reason, len(sequence.prompt), sequence.generated))

    def _fail(self, sequence: Sequence, error: IngotError) -> None:
        self._retire(sequence)
        sequence.emit(Failed(sequence.index, error))

    def _retire(self, sequence: Sequence) -> None:
        if sequence.finished:
            return
        sequence.finished = True
        sequence.stream = None
        if sequence.model is not None:
            sequence.model.active_sequences -= 1
            sequence.model.touch()
        with self._admitted_lock:
            self._admitted -= 1
            self._claims[sequence.model_id] -= 1

    def _shutdown(self) -> None:
        with self._admitted_lock:
            self._stopped.set()
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                break
            if command[0] == "generate":
                self._waiting.append(command[1])
            elif command[0] in ("load", "unload"):
                command[-1].set_exception(Unavailable("The inference service is shutting down."))
        for sequence in [*self._live(), *self._waiting]:
            self._fail(sequence, Unavailable("The inference service is shutting down."))
        self._waiting.clear()
        self._drop_finished_groups()
        self._prompt_cache.clear()
        self._models.clear()
