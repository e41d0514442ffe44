"""From a GenerateRequest's sampling parameters to onnxruntime-genai search options: pure and checked."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingot.common import contextlength
from ingot.common.errors import InvalidArgument
from ingot.inference.v1 import inference_service_pb2 as pb
from services.inference.logits import LogitsProcessor
from services.inference.toolcalls import with_json_layout


@dataclass(frozen=True)
class Budget:
    """How many tokens a sequence may generate; max_length is what the KV cache is sized to."""

    prompt_tokens: int
    max_tokens: int

    @property
    def max_length(self) -> int:
        return self.prompt_tokens + self.max_tokens


def budget(prompt_tokens: int, requested: int | None, *, context_length: int, max_output_tokens: int) -> Budget:
    if prompt_tokens == 0:
        raise InvalidArgument("The prompt is empty: there is nothing to complete.", param="messages")
    room = contextlength.room(prompt_tokens, context_length, where="the prompt", param="messages",
                              advice=". Shorten the messages.")
    if requested is None:
        return Budget(prompt_tokens, min(max_output_tokens, room))
    if requested < 1:
        raise InvalidArgument("max_tokens must be at least 1.", param="max_tokens")
    if requested > room:
        raise contextlength.too_long(prompt_tokens, requested, context_length, where="the messages",
                                     advice="Reduce the length of the messages or the completion.")
    return Budget(prompt_tokens, requested)


def search_options(params: pb.SamplingParams, max_length: int) -> dict[str, Any]:
    """Options for GeneratorParams.set_search_options; unset fields keep the model's genai_config defaults."""
    options: dict[str, Any] = {"max_length": max_length}
    if params.HasField("temperature"):
        if not 0.0 <= params.temperature <= 2.0:
            raise InvalidArgument("temperature must be between 0 and 2.", param="temperature")
        if params.temperature == 0.0:
            options["do_sample"] = False
        else:
            options["do_sample"] = True
            options["temperature"] = params.temperature
    if params.HasField("top_p"):
        if not 0.0 < params.top_p <= 1.0:
            raise InvalidArgument("top_p must be greater than 0 and at most 1.", param="top_p")
        options["top_p"] = params.top_p
    if params.HasField("top_k"):
        if params.top_k < 1:
            raise InvalidArgument("top_k must be at least 1.", param="top_k")
        options["top_k"] = params.top_k
    if params.HasField("seed"):
        # onnxruntime-genai takes a signed 32-bit seed; fold larger seeds in deterministically.
        options["random_seed"] = params.seed % (2**31)
    if params.HasField("repetition_penalty"):
        if params.repetition_penalty <= 0.0:
            raise InvalidArgument("repetition_penalty must be positive.", param="repetition_penalty")
        # Not a search option: the LogitsProcessor applies it, so logprobs show it and rows with different
        # penalties can share a generator.
    return options


# With fast-forward a grammar appends every token it forces in one step, and such a run can start just
# before the budget ends; the generator's KV cache (max_length) needs room past the budget for it, or
# onnxruntime fails the step. The engine still ends the choice at its budget.
FAST_FORWARD_ROOM = 256


def fast_forward_length(budget: Budget, context_length: int) -> int | None:
    """The generator's max_length with room for forced runs; None where the context has no such room."""
    length = budget.max_length + FAST_FORWARD_ROOM
    return length if length <= context_length else None


MAX_STOP_STRINGS = 4
MAX_TOP_LOGPROBS = 20
MAX_CHOICES = 16


def choices(n: int) -> int:
    if n > MAX_CHOICES:
        raise InvalidArgument(f"n must be at most {MAX_CHOICES}.", param="n")
    return max(n, 1)


def stop_strings(params: pb.SamplingParams) -> tuple[str, ...]:
    if len(params.stop) > MAX_STOP_STRINGS:
        raise InvalidArgument(f"At most {MAX_STOP_STRINGS} stop sequences are allowed.", param="stop")
    if any(not stop for stop in params.stop):
        raise InvalidArgument("A stop sequence must not be empty.", param="stop")
    return tuple(params.stop)


def top_logprobs(params: pb.SamplingParams) -> int | None:
    if params.top_logprobs > MAX_TOP_LOGPROBS:
        raise InvalidArgument(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}.", param="top_logprobs")
    if params.top_logprobs and not params.logprobs:
        raise InvalidArgument("top_logprobs requires logprobs to be true.", param="top_logprobs")
    return params.top_logprobs if params.logprobs else None


def logits_processor(params: pb.SamplingParams, vocab_size: int, prompt: Sequence[int] = ()) -> LogitsProcessor | None:
    for name in ("presence_penalty", "frequency_penalty"):
        if not -2.0 <= getattr(params, name) <= 2.0:
            raise InvalidArgument(f"{name} must be between -2 and 2.", param=name)
    for token_id, bias in params.logit_bias.items():
        if token_id >= vocab_size:
            raise InvalidArgument(f"logit_bias names token {token_id}, outside the vocabulary of {vocab_size}.",
                                  param="logit_bias")
        if not -100.0 <= bias <= 100.0:
            raise InvalidArgument(f"logit_bias for token {token_id} must be between -100 and 100.",
                                  param="logit_bias")
    repetition = params.repetition_penalty if params.HasField("repetition_penalty") else 1.0
    processor = LogitsProcessor(dict(params.logit_bias), params.presence_penalty, params.frequency_penalty,
                                repetition, prompt)
    return processor if processor.active else None


def guidance(constraint: pb.Constraint) -> tuple[str, str] | None:
    kind = constraint.WhichOneof("kind")
    if kind is None:
        return None
    text = getattr(constraint, kind)
    if not text.strip():
        raise InvalidArgument(f"The {kind} constraint is empty.", param="constraint")
    if kind == "json_schema":
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(f"The json_schema constraint is not JSON: {exc}", param="constraint") from None
        text = json.dumps(with_json_layout(schema))
    return kind, text
