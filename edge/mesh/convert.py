"""Between the OpenAI schemas and the protobuf messages the services speak: the requests a surface sends
built here, and the answers' parts read back into the schemas."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from edge.openai.schemas import (ChatCompletionRequest, ChatMessage, ChoiceLogprobs, CompletionLogprobs,
                                 CompletionRequest, SamplingFields, TokenLogprob, TopLogprob)
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as inference_pb2

if TYPE_CHECKING:
    from edge.mesh.toolcalls import Structured

FINISH_REASONS = {
    common_pb2.FINISH_REASON_STOP: "stop",
    common_pb2.FINISH_REASON_LENGTH: "length",
    common_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    common_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
    common_pb2.FINISH_REASON_FUNCTION_CALL: "function_call",
}


def chat_message(message: ChatMessage) -> common_pb2.ChatMessage:
    proto = common_pb2.ChatMessage(
        role="system" if message.role == "developer" else message.role,
        name=message.name or "",
        tool_call_id=message.tool_call_id or "",
        tool_calls=[
            common_pb2.ToolCall(id=call.id, type=call.type,
                                function=common_pb2.FunctionCall(name=call.function.name,
                                                                 arguments=call.function.arguments))
            for call in message.tool_calls or ()
        ],
    )
    text = message.text()
    if text is not None:
        proto.content = text
    return proto


def user_message(text: str) -> common_pb2.ChatMessage:
    """A raw prompt as the one user turn of a conversation, for a model's chat template."""
    return common_pb2.ChatMessage(role="user", content=text)


def chat_generate_request(chat: ChatCompletionRequest, model: str, prompt: Sequence[int],
                          structured: Structured) -> inference_pb2.GenerateRequest:
    request = inference_pb2.GenerateRequest(
        model=model, prompt_token_ids=prompt, sampling=sampling_params(chat, chat.token_limit),
        n=chat.choices, execution_provider=chat.ep or "", tools=structured.tools, constraint=structured.constraint)
    if chat.ttl is not None:
        request.ttl_seconds = chat.ttl
    return request


def completion_generate_request(body: CompletionRequest, model: str, prompt: Sequence[int],
                                max_tokens: int | None) -> inference_pb2.GenerateRequest:
    sampling = sampling_params(body, max_tokens)
    if body.logprobs is not None:
        sampling.logprobs = True
        sampling.top_logprobs = body.logprobs
    return inference_pb2.GenerateRequest(model=model, prompt_token_ids=prompt, sampling=sampling,
                                         n=body.choices, prompt_logprobs=bool(body.echo and body.logprobs is not None))


def sampling_params(request: SamplingFields, max_tokens: int | None) -> inference_pb2.SamplingParams:
    # Only what the client set: an unset field lets the model's own defaults apply.
    params = inference_pb2.SamplingParams(
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias={int(token): bias for token, bias in (request.logit_bias or {}).items()},
        stop=request.stop or [],
    )
    if max_tokens is not None:
        params.max_tokens = max_tokens
    for name in ("temperature", "top_p", "top_k", "repetition_penalty"):
        if (value := getattr(request, name)) is not None:
            setattr(params, name, value)
    seed = request.seed if request.seed is not None else request.random_seed
    if seed is not None:
        # OpenAI's seed is a signed 64-bit integer; the proto carries its two's-complement bits.
        params.seed = seed % 2**64
    if isinstance(request, ChatCompletionRequest) and request.logprobs:
        params.logprobs = True
        params.top_logprobs = request.top_logprobs or 0
    return params


def logprobs(entries) -> ChoiceLogprobs:
    def top(entry) -> TopLogprob:
        return TopLogprob(token=entry.token, logprob=entry.logprob, bytes=list(entry.bytes))

    return ChoiceLogprobs(content=[
        TokenLogprob(**top(entry).model_dump(), top_logprobs=[top(alt) for alt in entry.top_logprobs])
        for entry in entries
    ])


class LegacyLogprobs:
    """One choice's logprobs in the legacy completions shape, built as its tokens arrive.

    text_offset counts characters of the choice's text from its start (the echoed prompt included), as
    vLLM counts them; a token holding only part of a multi-byte character starts where that character does.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chars = 0

    def add(self, entries: Iterable, *, unscored_first: str | None = None) -> CompletionLogprobs:
        """The next tokens' logprobs. `unscored_first` is an echoed prompt's first token, which has no
        logprob: nothing came before it to score it in."""
        shaped = CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
        if unscored_first is not None:
            self._put(shaped, unscored_first, unscored_first.encode(), None, None)
        for entry in entries:
            top = {alternative.token: alternative.logprob for alternative in entry.top_logprobs}
            # OpenAI always reports the sampled token too, so there may be logprobs + 1 entries.
            top.setdefault(entry.token, entry.logprob)
            self._put(shaped, entry.token, entry.bytes, entry.logprob, top)
        return shaped

    def _put(self, shaped: CompletionLogprobs, token: str, raw: bytes, logprob: float | None,
             top: dict[str, float] | None) -> None:
        shaped.tokens.append(token)
        shaped.token_logprobs.append(logprob)
        shaped.top_logprobs.append(top)
        shaped.text_offset.append(self._chars)
        self._chars += len(self._decoder.decode(raw))
