"""A batch group: sequences that share one onnxruntime-genai Generator and step together.

A step costs little more for several rows than for one on a CPU (measured on 2 cores with SmolLM2: 12 ms for
one row, 17 ms for four, 31 ms for eight), so sequences that may share a generator are batched. Rows with
different prompt lengths are right-padded; each row keeps its own budget, logits processing, logprobs and
detokenizer, and finishes on its own. What a generator holds for all its rows (one random stream, one
grammar, token-by-token prompt scoring) keeps a sequence in a group of its own: see `batch_key`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime_genai as og

from ingot.common.errors import InvalidArgument
from ingot.common.v1 import common_pb2
from services.inference import models
from services.inference.events import PromptScored, Tokens
from services.inference.logits import log_softmax, logprob_entry
from services.inference.speculation import SPECULATIVE_OPTIONS

Outcome = tuple[Any, int]  # (the Sequence, a common_pb2.FinishReason)


def chunk_end(start: int, total: int, chunk: int) -> int:
    """Where a prefill chunk of `total` tokens from `start` ends: `chunk` tokens on, but never one token short
    of the end, since a last chunk of one token would be computed as a decode step is, not as a prefill
    (see LoadedModel.steps_agree)."""
    end = min(total, start + chunk)
    return end - 1 if total - end == 1 else end


def batch_key(sequence, prefill_chunk: int) -> tuple | None:
    """Sequences with equal keys may share a generator; None means the sequence needs one of its own."""
    if len(sequence.prompt) > prefill_chunk:
        # A batched generator takes its prompts in one append_tokens call; a longer prompt is prefilled
        # alone in chunks, so that it never holds every other stream up for long.
        return None
    options = dict(sequence.search_options)
    options.pop("max_length")
    if options.get("do_sample"):
        if "random_seed" in options:
            # A generator has one random stream: a seeded row's output would depend on its companions.
            return None
    else:
        options.pop("random_seed", None)
    if sequence.guidance is not None or sequence.score_prompt:
        return None
    return (sequence.model_id, tuple(sorted(options.items())))


@dataclass(eq=False)
class Group:
    model: models.LoadedModel
    rows: list
    prefill_chunk: int
    generator: og.Generator | None = None
    prefilled: int = 0
    # The generator's max_length (its KV cache's size); None: what the rows need (max_length below).
    capacity: int | None = None
    # Verify n-gram drafts from the prompt (one row only); see speculation.py.
    speculative: bool = False
    # Made to be kept in the prompt cache once its row finishes normally.
    keep: bool = False
    _prompts: np.ndarray | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return max(len(row.prompt) for row in self.rows)

    @property
    def max_length(self) -> int:
        length = self.width + max(row.budget.max_tokens for row in self.rows)
        # A row alone may ask for more: room for a grammar's forced run past its budget (sampling.py).
        return max(length, self.rows[0].search_options["max_length"]) if self.solo else length

    @property
    def solo(self) -> bool:
        return len(self.rows) == 1

    def live(self) -> list:
        return [row for row in self.rows if not row.finished]

    def close(self) -> None:
        # Dropping the generator returns its KV cache to the pool at once.
        self.generator = None
        for row in self.rows:
            row.stream = None

    def step(self) -> list[Outcome]:
        """One prefill chunk or one decode step for every live row; returns the rows that finished."""
        if self._prompts is None:
            self._start()
        if self.prefilled < self.width:
            if self.solo and self.rows[0].score_prompt:
                self._score_prompt(self.rows[0])
            else:
                self._prefill()
            return []
        return self._decode()

    def _start(self) -> None:
        if self.generator is None:
            self.generator = self._new_generator()
        pad = self.model.pad_token_id
        self._prompts = np.array([row.prompt + [pad] * (self.width - len(row.prompt)) for row in self.rows],
                                 dtype=np.int32)
        for row in self.rows:
            row.stream = self.model.tokenizer.create_stream()

    def _new_generator(self) -> og.Generator:
        first = self.rows[0]
        self.capacity = self.capacity or self.max_length
        params = og.GeneratorParams(self.model.model)
        params.set_search_options(**{**first.search_options, "max_length": self.capacity,
                                     "batch_size": len(self.rows)})
        if self.speculative:
            params.set_speculative_options(**SPECULATIVE_OPTIONS)
        if first.guidance is not None:
            kind, text = first.guidance
            params.set_guidance(kind, text, first.fast_forward)
        try:
            return og.Generator(self.model.model, params)
        except Exception as exc:  # noqa: BLE001 - llguidance reports a grammar it cannot compile here
            if first.guidance is not None:
                raise InvalidArgument(f"The output constraint cannot be enforced: {exc}", param="constraint") from None
            raise

    def _prefill(self) -> None:
        assert self.generator is not None and self._prompts is not None
        # onnxruntime-genai takes a batch's prompts in a single call; batch_key keeps them within one chunk.
        width = self.prefill_chunk if self.solo else self.width
        if not self.model.steps_agree:
            # The same prompt must give the same KV however it was cut into chunks (the prompt cache cuts it).
            width = chunk_end(self.prefilled, self.width, width) - self.prefilled
        chunk = self._prompts[:, self.prefilled:self.prefilled + width]
        self.generator.append_tokens(chunk)
        self.prefilled += chunk.shape[1]

    def _score_prompt(self, row) -> None:
        # get_logits only shows the last position, so scoring a prompt means one position per step.
        assert self.generator is not None
        for _ in range(min(self.prefill_chunk, len(row.prompt) - self.prefilled)):
            self.generator.append_tokens(row.prompt[self.prefilled:self.prefilled + 1])
            self.prefilled += 1
            if self.prefilled < len(row.prompt):
                scores = log_softmax(self.generator.get_logits()[0, -1])
                row.prompt_entries.append(logprob_entry(scores, row.prompt[self.prefilled], row.top_logprobs or 0))
        if self.prefilled == len(row.prompt):
            row.emit(PromptScored(row.index, row.prompt_entries))

    def _process_logits(self, live: list[int]) -> dict[int, np.ndarray]:
        """Applies each row's bias and penalties; returns the log-distributions of rows that want logprobs."""
        assert self.generator is not None
        wanted = [i for i in live if self.rows[i].processor is not None or self.rows[i].top_logprobs is not None]
        if not wanted:
            return {}
        logits = self.generator.get_logits()
        changed = False
        scores = {}
        for i in wanted:
            row, values = self.rows[i], logits[i, -1]
            if row.processor is not None:
                row.processor.apply(values)
                changed = True
            if row.top_logprobs is not None:
                scores[i] = log_softmax(values)
        if changed:
            self.generator.set_logits(logits)
        return scores

    def _decode(self) -> list[Outcome]:
        generator = self.generator
        assert generator is not None
        live = [i for i, row in enumerate(self.rows) if not row.finished]
        scores = self._process_logits(live)
        before = generator.token_count()
        generator.generate_next_token()
        done = generator.is_done()
        eos = self.model.eos_token_ids
        if self.solo and self.rows[0].fast_forward:
            # A grammar can append several tokens in one step; the end-of-sequence token is never appended.
            appended = {0: [int(t) for t in generator.get_sequence(0)[before:]]}
        else:
            next_tokens = generator.get_next_tokens()
            appended = {i: [int(next_tokens[i])] for i in live}
        outcomes: list[Outcome] = []
        for i in live:
            row, tokens = self.rows[i], appended[i]
            if tokens and tokens[-1] in eos:
                tokens.pop()
                ended = True
            else:
                ended = False
            for token in tokens:
                row.generated += 1
                self.model.generated_tokens += 1
                if row.processor is not None:
                    row.processor.observe(token)
                text = "" if token in self.model.special_token_ids else row.stream.decode(token)
                entry = None if i not in scores else logprob_entry(scores[i], token, row.top_logprobs or 0)
                row.emit(Tokens(row.index, token, text, entry))
                if row.generated >= row.budget.max_tokens:
                    break
            if row.generated >= row.budget.max_tokens:
                outcomes.append((row, common_pb2.FINISH_REASON_LENGTH))
            elif ended:
                outcomes.append((row, common_pb2.FINISH_REASON_STOP))
            elif done:
                full = generator.token_count() >= (self.capacity or self.max_length)
                outcomes.append((row, common_pb2.FINISH_REASON_LENGTH if full else common_pb2.FINISH_REASON_STOP))
        return outcomes

