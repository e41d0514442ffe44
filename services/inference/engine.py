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

import onnxruntime_genai as og

from ingot.common.errors import FailedPrecondition, IngotError, Internal, ResourceExhausted, Unavailable
from ingot.common.v1 import common_pb2
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from services.inference import models
from services.inference.logits import LogitsProcessor, LogprobEntry, log_softmax, logprob_entry
from services.inference.sampling import Budget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tokens:
    index: int
    token_id: int
    text: str
    logprob: LogprobEntry | None = None


@dataclass(frozen=True)
class PromptScored:
    index: int
    entries: list[LogprobEntry]


@dataclass(frozen=True)
class Finished:
    index: int
    reason: int  # common_pb2.FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    index: int
    error: IngotError


Event = Tokens | PromptScored | Finished | Failed


@dataclass(eq=False)
class Sequence:
    """One generation. Created on the event loop; after submit only the engine thread touches its state,
    except `cancelled`, a flag the loop sets and the engine reads between steps."""

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
    prompt_entries: list[LogprobEntry] = field(default_factory=list)
    cancelled: bool = False
    generator: og.Generator | None = None
    stream: Any = None
    prefilled: int = 0
    generated: int = 0
    finished: bool = False
    model: models.LoadedModel | None = field(default=None, repr=False)

    def cancel(self) -> None:
        self.cancelled = True


def asyncio_emitter(loop: asyncio.AbstractEventLoop, sink: asyncio.Queue[Event]) -> Callable[[Event], None]:
    return lambda event: loop.call_soon_threadsafe(sink.put_nowait, event)


class Engine:
    def __init__(self, *, max_active: int, max_waiting: int, prefill_chunk: int) -> None:
        self._max_active = max_active
        self._max_waiting = max_waiting
        self._prefill_chunk = prefill_chunk
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._models: dict[str, models.LoadedModel] = {}
        self._loading: dict[str, concurrent.futures.Future[models.LoadedModel]] = {}
        self._waiting: deque[Sequence] = deque()
        self._active: list[Sequence] = []
        # Sequences admitted and not yet retired; guarded because submit runs on the loop thread.
        self._admitted = 0
        self._admitted_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ingot-engine", daemon=True)
        self._stopped = threading.Event()

    # ----- called from the event loop -----
    def start(self) -> None:
        self._thread.start()

    def loaded(self) -> list[models.LoadedModel]:
        return list(self._models.values())

    def get(self, model_id: str) -> models.LoadedModel | None:
        return self._models.get(model_id)

    async def ensure_loaded(self, info: registry_pb.ModelInfo) -> models.LoadedModel:
        if (model := self._models.get(info.id)) is not None:
            return model
        future = self._loading.get(info.id)
        if future is None:
            future = concurrent.futures.Future()
            self._loading[info.id] = future
            self._commands.put(("load", info, future))
        try:
            return await asyncio.wrap_future(future)
        finally:
            self._loading.pop(info.id, None)

    async def unload(self, model_id: str) -> None:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._commands.put(("unload", model_id, future))
        await asyncio.wrap_future(future)

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
        self._commands.put(("generate", sequence))

    def stop(self, timeout: float = 10.0) -> None:
        self._commands.put(("stop",))
        self._thread.join(timeout)

    # ----- the engine thread -----
    def _run(self) -> None:
        while True:
            if not self._drain_commands(block=not self._active and not self._waiting):
                break
            self._admit()
            for sequence in list(self._active):
                self._step(sequence)
            # Generator calls hold the GIL; yielding it once per round keeps the gRPC event loop responsive.
            time.sleep(0)
        self._shutdown()

    def _drain_commands(self, *, block: bool) -> bool:
        try:
            command = self._commands.get(block=block)
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

    def _handle(self, command: tuple[Any, ...]) -> None:
        kind = command[0]
        if kind == "generate":
            self._waiting.append(command[1])
        elif kind == "load":
            _, info, future = command
            try:
                if info.id not in self._models:
                    started = time.perf_counter()
                    self._models[info.id] = models.load(info)
                    log.info("loaded %s from %s in %.2f s", info.id, info.path, time.perf_counter() - started)
                future.set_result(self._models[info.id])
            except IngotError as error:
                future.set_exception(error)
            except Exception as exc:  # noqa: BLE001 - onnxruntime-genai raises plain RuntimeErrors
                log.exception("loading %s failed", info.id)
                future.set_exception(Internal(f"Loading the model '{info.id}' failed: {exc}"))
        elif kind == "unload":
            _, model_id, future = command
            model = self._models.get(model_id)
            busy = model is not None and (
                model.active_sequences or any(s.model_id == model_id for s in self._waiting)
            )
            if busy:
                future.set_exception(FailedPrecondition(
                    f"The model '{model_id}' is generating {model.active_sequences} sequences.", param="model"))
            else:
                self._models.pop(model_id, None)
                log.info("unloaded %s", model_id)
                future.set_result(None)

    def _admit(self) -> None:
        while self._waiting and len(self._active) < self._max_active:
            sequence = self._waiting.popleft()
            model = self._models.get(sequence.model_id)
            if model is None:
                self._fail(sequence, Unavailable(f"The model '{sequence.model_id}' was unloaded.", param="model"))
                continue
            sequence.model = model
            model.active_sequences += 1
            self._active.append(sequence)

    def _step(self, sequence: Sequence) -> None:
        if sequence.cancelled:
            self._retire(sequence)
            return
        model = sequence.model
        assert model is not None
        try:
            if sequence.generator is None:
                params = og.GeneratorParams(model.model)
                params.set_search_options(**sequence.search_options)
                sequence.generator = og.Generator(model.model, params)
                sequence.stream = model.tokenizer.create_stream()
            generator = sequence.generator
            if sequence.prefilled < len(sequence.prompt):
                self._prefill(sequence, generator)
                return
            logprobs = self._process_logits(sequence, generator)
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if token in model.eos_token_ids and generator.is_done():
                self._finish(sequence, common_pb2.FINISH_REASON_STOP)
                return
            sequence.generated += 1
            model.generated_tokens += 1
            if sequence.processor is not None:
                sequence.processor.observe(token)
            text = "" if token in model.special_token_ids else sequence.stream.decode(token)
            entry = None if logprobs is None else logprob_entry(logprobs, token, sequence.top_logprobs or 0)
            sequence.emit(Tokens(sequence.index, token, text, entry))
            if sequence.generated >= sequence.budget.max_tokens or generator.is_done():
                self._finish(sequence, common_pb2.FINISH_REASON_LENGTH)
        except Exception as exc:  # noqa: BLE001 - a failing sequence must not take the others down
            log.exception("generation failed for %s", sequence.model_id)
            self._fail(sequence, Internal(f"Generation failed: {exc}"))

    def _prefill(self, sequence: Sequence, generator: og.Generator) -> None:
        if not sequence.score_prompt:
            chunk = sequence.prompt[sequence.prefilled:sequence.prefilled + self._prefill_chunk]
            generator.append_tokens(chunk)
            sequence.prefilled += len(chunk)
            return
        # get_logits only shows the last position, so scoring a prompt means one position per step.
        for _ in range(min(self._prefill_chunk, len(sequence.prompt) - sequence.prefilled)):
            generator.append_tokens(sequence.prompt[sequence.prefilled:sequence.prefilled + 1])
            sequence.prefilled += 1
            if sequence.prefilled < len(sequence.prompt):
                scores = log_softmax(generator.get_logits()[0, -1])
                sequence.prompt_entries.append(
                    logprob_entry(scores, sequence.prompt[sequence.prefilled], sequence.top_logprobs or 0))
        if sequence.prefilled == len(sequence.prompt):
            sequence.emit(PromptScored(sequence.index, sequence.prompt_entries))

    @staticmethod
    def _process_logits(sequence: Sequence, generator: og.Generator):
        """Applies the sequence's bias and penalties; returns the log-distribution when logprobs are wanted."""
        if sequence.processor is None and sequence.top_logprobs is None:
            return None
        logits = generator.get_logits()
        row = logits[0, -1]
        if sequence.processor is not None:
            sequence.processor.apply(row)
            generator.set_logits(logits)
        return None if sequence.top_logprobs is None else log_softmax(row)

    def _finish(self, sequence: Sequence, reason: int) -> None:
        sequence.emit(Finished(sequence.index, reason, len(sequence.prompt), sequence.generated))
        self._retire(sequence)

    def _fail(self, sequence: Sequence, error: IngotError) -> None:
        sequence.emit(Failed(sequence.index, error))
        self._retire(sequence)

    def _retire(self, sequence: Sequence) -> None:
        if sequence.finished:
            return
        sequence.finished = True
        # Dropping the generator returns its KV cache to the pool right away.
        sequence.generator = None
        sequence.stream = None
        if sequence in self._active:
            self._active.remove(sequence)
            if sequence.model is not None:
                sequence.model.active_sequences -= 1
        with self._admitted_lock:
            self._admitted -= 1

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
                command[2].set_exception(Unavailable("The inference service is shutting down."))
        for sequence in [*self._active, *self._waiting]:
            self._fail(sequence, Unavailable("The inference service is shutting down."))
        self._waiting.clear()
        self._models.clear()
