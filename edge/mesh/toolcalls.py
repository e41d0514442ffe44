"""A chat request's tools, legacy functions and response format in the services' terms, and the calls
the inference service parsed back in OpenAI's.

The inference service enforces both by constrained decoding and returns calls already parsed
(GenerateResponse.tool_calls); what is left here is OpenAI's shapes: `tool_choice` and `function_call`
as a ToolChoice, the legacy `functions` API as one call at most and `function_call` answers, and the
assembly of a choice's call deltas into `message.tool_calls`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge.mesh import convert
from edge.openai.schemas import (ChatCompletionRequest, ChatMessage, FunctionCall, FunctionCallDelta, ToolCall,
                          ToolCallDelta)
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as inference_pb2

_CHOICES = {
    "none": inference_pb2.TOOL_CHOICE_NONE,
    "auto": inference_pb2.TOOL_CHOICE_AUTO,
    "required": inference_pb2.TOOL_CHOICE_REQUIRED,
    "function": inference_pb2.TOOL_CHOICE_FUNCTION,
}


@dataclass(frozen=True)
class Structured:
    """What a request asks of its output's structure."""

    # For the tokenizer service, OpenAI's `tools` array: the prompt describes the functions.
    tools_json: str = ""
    tools: inference_pb2.Tools | None = None
    constraint: inference_pb2.Constraint | None = None
    # The legacy `functions` API: the call comes back as `function_call`.
    legacy: bool = False

    @property
    def constraint_param(self) -> str:
        """The request parameter a grammar the engine cannot compile comes from."""
        if self.tools is not None:
            return "functions" if self.legacy else "tools"
        return "response_format"


def _constraint(request: ChatCompletionRequest) -> inference_pb2.Constraint | None:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return None
    schema = response_format.json_schema.schema_ if response_format.type == "json_schema" else None
    return inference_pb2.Constraint(json_schema=json.dumps({"type": "object"} if schema is None else schema))


def structured(request: ChatCompletionRequest) -> Structured:
    constraint = _constraint(request)
    if request.tools is not None:
        functions = [tool.function for tool in request.tools]
        choice = request.tool_choice
        mode, name = (choice.type, choice.function.name if choice.function else "") if choice else ("auto", "")
        parallel = request.parallel_tool_calls is not False
        legacy = False
    elif request.functions is not None:
        functions = request.functions
        call = request.function_call
        mode, name = ("function", call.name) if call is not None and call.name else (
            call.mode if call is not None and call.mode else "auto", "")
        # A legacy answer holds one function_call at most.
        parallel, legacy = False, True
    else:
        return Structured(constraint=constraint)
    tools = inference_pb2.Tools(
        functions=[inference_pb2.FunctionDefinition(
            name=function.name, parameters_json=json.dumps(function.parameters) if function.parameters else "")
            for function in functions],
        choice=_CHOICES[mode], function_name=name, parallel_calls=parallel)
    tools_json = json.dumps([{"type": "function", "function": function.model_dump(exclude_none=True)}
                             for function in functions])
    return Structured(tools_json=tools_json, tools=tools, constraint=constraint, legacy=legacy)


def chat_messages(messages: Sequence[ChatMessage]) -> list[common_pb2.ChatMessage]:
    """The messages for the tokenizer, the legacy function_call / function turns as tool calls and tool
    results, so templates (and ingot's own tool rendering) see one form."""
    out = []
    last_call_id = ""
    for index, message in enumerate(messages):
        if message.function_call is not None:
            last_call_id = f"call_{index}"
            message = message.model_copy(update={
                "function_call": None, "tool_calls": [ToolCall(id=last_call_id, function=message.function_call)]})
        elif message.role == "function":
            message = message.model_copy(update={"role": "tool", "tool_call_id": last_call_id or f"call_{index}"})
        out.append(convert.chat_message(message))
    return out


def merge(parts: dict[int, list[str]], deltas: Sequence[inference_pb2.ToolCallDelta]) -> dict[int, list[str]]:
    """`deltas` added to `parts`, by call index: [id, name, arguments], each the concatenation of its pieces."""
    for delta in deltas:
        call = parts.setdefault(delta.index, ["", "", ""])
        call[0] += delta.id
        call[1] += delta.name
        call[2] += delta.arguments
    return parts


@dataclass
class Calls:
    """One choice's calls, assembled from the inference service's deltas."""

    legacy: bool = False
    # By index: [id, name, arguments].
    parts: dict[int, list[str]] = field(default_factory=dict)

    def add(self, deltas: Sequence[inference_pb2.ToolCallDelta]) -> None:
        merge(self.parts, deltas)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def tool_calls(self) -> list[ToolCall] | None:
        if self.legacy or not self.parts:
            return None
        return [ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))
                for call_id, name, arguments in (self.parts[i] for i in sorted(self.parts))]

    def function_call(self) -> FunctionCall | None:
        if not self.legacy or not self.parts:
            return None
        _, name, arguments = self.parts[min(self.parts)]
        return FunctionCall(name=name, arguments=arguments)

    def finish_reason(self, reason: str) -> str:
        return "function_call" if self.legacy and reason == "tool_calls" else reason


def delta_fields(deltas: Sequence[inference_pb2.ToolCallDelta], legacy: bool) -> dict:
    """A chunk's call fields for these deltas, one entry per call: `tool_calls`, or the legacy
    `function_call`. A call's first entry carries its id, type and name, and "" arguments at least."""
    merged = merge({}, deltas)
    if legacy:
        _, name, arguments = merged[min(merged)]
        return {"function_call": FunctionCallDelta(name=name or None, arguments=arguments)}
    return {"tool_calls": [
        ToolCallDelta(index=index, id=call_id or None, type="function" if call_id else None,
                      function=FunctionCallDelta(name=name or None, arguments=arguments))
        for index, (call_id, name, arguments) in sorted(merged.items())]}
