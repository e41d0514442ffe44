"""Between the OpenAI schemas and the protobuf messages the services speak."""

from __future__ import annotations

from edge.schemas import ChatCompletionRequest, ChatMessage, Usage
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
        role=message.role,
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


def sampling_params(request: ChatCompletionRequest) -> inference_pb2.SamplingParams:
    # Only what the client set: an unset field lets the model's own defaults apply.
    params = inference_pb2.SamplingParams()
    if request.token_limit is not None:
        params.max_tokens = request.token_limit
    if request.temperature is not None:
        params.temperature = request.temperature
    if request.top_p is not None:
        params.top_p = request.top_p
    return params


def usage(final: inference_pb2.GenerateResponse, prompt_tokens: int, completion_tokens: int) -> Usage:
    """The service's own count when it sent one, else what the edge counted on the way through."""
    if final.HasField("usage"):
        u = final.usage
        return Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                     total_tokens=u.total_tokens or u.prompt_tokens + u.completion_tokens)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens)
