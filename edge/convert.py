"""Between the OpenAI schemas and the protobuf messages the services speak."""

from __future__ import annotations

from edge.schemas import (ChatCompletionRequest, ChatMessage, ChoiceLogprobs, SamplingFields, TokenLogprob,
                          TopLogprob)
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as inference_pb2

# Foundry Local's names for a model's task.
TASKS = {
    common_pb2.MODEL_TASK_CHAT_COMPLETION: "chat-completion",
    common_pb2.MODEL_TASK_EMBEDDINGS: "embeddings",
}

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
