"""The public gRPC contract's messages to and from the REST API's JSON bodies.

A gRPC request becomes exactly the body a REST client would send, so both surfaces validate, default and
answer alike; a REST answer (each streamed chunk, or one body) becomes the contract's typed messages.
JSON-valued fields (a tool's parameters, a response format's schema) travel as JSON text in the contract.
"""

from __future__ import annotations

import json
from typing import Any

from ingot.api.v1 import ingot_service_pb2 as pb
from ingot.common.errors import InvalidArgument

_ROLES = {pb.ROLE_SYSTEM: "system", pb.ROLE_DEVELOPER: "developer", pb.ROLE_USER: "user",
          pb.ROLE_ASSISTANT: "assistant", pb.ROLE_TOOL: "tool"}
_ROLE_OF = {name: role for role, name in _ROLES.items()}
_MODES = {pb.ToolChoice.MODE_NONE: "none", pb.ToolChoice.MODE_AUTO: "auto",
          pb.ToolChoice.MODE_REQUIRED: "required"}
_FORMATS = {pb.ResponseFormat.TYPE_TEXT: "text", pb.ResponseFormat.TYPE_JSON_OBJECT: "json_object",
            pb.ResponseFormat.TYPE_JSON_SCHEMA: "json_schema"}
# The legacy function_call reason cannot arise here (the contract has no `functions`), but a call is a call.
FINISH_REASONS = {"stop": pb.FINISH_REASON_STOP, "length": pb.FINISH_REASON_LENGTH,
                  "tool_calls": pb.FINISH_REASON_TOOL_CALLS, "function_call": pb.FINISH_REASON_TOOL_CALLS,
                  "content_filter": pb.FINISH_REASON_CONTENT_FILTER}
_SAMPLING = ("max_tokens", "temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty",
             "repetition_penalty")
_STREAMED = {"stream": True, "stream_options": {"include_usage": True}}


def _json(text: str, param: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"Invalid JSON in '{param}': {exc}.", param=param) from None


def sampling(fields: pb.Sampling) -> dict[str, Any]:
    body: dict[str, Any] = {name: getattr(fields, name) for name in _SAMPLING if fields.HasField(name)}
    if fields.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in fields.logit_bias.items()}
    if fields.stop:
        body["stop"] = list(fields.stop)
    return body


def _message(message: pb.Message, index: int) -> dict[str, Any]:
    if message.role not in _ROLES:
        raise InvalidArgument(f"Invalid value for 'messages[{index}].role': set one of the Role values.",
                              param=f"messages[{index}].role")
    body: dict[str, Any] = {"role": _ROLES[message.role]}
    if message.HasField("content"):
        body["content"] = message.content
    if message.name:
        body["name"] = message.name
    if message.tool_calls:
        body["tool_calls"] = [{"id": call.id, "type": "function",
                               "function": {"name": call.function.name, "arguments": call.function.arguments}}
                              for call in message.tool_calls]
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    return body


def _tool(tool: pb.Tool, index: int) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description:
        function["description"] = tool.function.description
    if tool.function.parameters_json:
        function["parameters"] = _json(tool.function.parameters_json, f"tools[{index}].function.parameters_json")
    if tool.function.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _tool_choice(choice: pb.ToolChoice) -> Any:
    kind = choice.WhichOneof("choice")
    if kind == "function_name":
        return {"type": "function", "function": {"name": choice.function_name}}
    return _MODES.get(choice.mode)


def _response_format(fmt: pb.ResponseFormat) -> dict[str, Any] | None:
    kind = _FORMATS.get(fmt.type)
    if kind is None:
        return None
    body: dict[str, Any] = {"type": kind}
    if fmt.HasField("json_schema"):
        schema: dict[str, Any] = {"name": fmt.json_schema.name}
        if fmt.json_schema.description:
            schema["description"] = fmt.json_schema.description
        if fmt.json_schema.schema_json:
            schema["schema"] = _json(fmt.json_schema.schema_json, "response_format.json_schema.schema_json")
        if fmt.json_schema.strict:
            schema["strict"] = True
        body["json_schema"] = schema
    return body


def chat_body(request: pb.ChatRequest) -> dict[str, Any]:
    """The streamed REST chat request that `request` stands for."""
    body: dict[str, Any] = {"model": request.model,
                            "messages": [_message(m, i) for i, m in enumerate(request.messages)],
                            **sampling(request.sampling), **_STREAMED}
    if request.n:
        body["n"] = request.n
    if request.logprobs:
        body["logprobs"] = True
    if request.HasField("top_logprobs"):
        body["top_logprobs"] = request.top_logprobs
    if request.tools:
        body["tools"] = [_tool(tool, i) for i, tool in enumerate(request.tools)]
    if request.HasField("tool_choice") and (choice := _tool_choice(request.tool_choice)) is not None:
        body["tool_choice"] = choice
    if request.HasField("parallel_tool_calls"):
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if (fmt := _response_format(request.response_format)) is not None:
        body["response_format"] = fmt
    if request.user:
        body["user"] = request.user
    return body


def complete_body(request: pb.CompleteRequest) -> dict[str, Any]:
    # An empty list goes as it is, so the REST validation names `prompt` in its error.
    body: dict[str, Any] = {"model": request.model, "prompt": list(request.prompts), **sampling(request.sampling),
                            **_STREAMED}
    if request.n:
        body["n"] = request.n
    if request.HasField("logprobs"):
        body["logprobs"] = request.logprobs
    if request.echo:
        body["echo"] = True
    if request.suffix:
        body["suffix"] = request.suffix
    if request.user:
        body["user"] = request.user
    return body


def embed_body(request: pb.EmbedRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "input": list(request.inputs), "encoding_format": "float"}
    if request.HasField("dimensions"):
        body["dimensions"] = request.dimensions
    if request.user:
        body["user"] = request.user
    return body


def _usage(usage: dict[str, Any]) -> pb.Usage:
    return pb.Usage(prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0),
                    total_tokens=usage.get("total_tokens", 0))


def _top(entry: dict[str, Any]) -> pb.TopLogprob:
    return pb.TopLogprob(token=entry["token"], logprob=entry["logprob"], bytes=bytes(entry.get("bytes") or []))


def _token_logprob(entry: dict[str, Any]) -> pb.TokenLogprob:
    return pb.TokenLogprob(token=entry["token"], logprob=entry["logprob"], bytes=bytes(entry.get("bytes") or []),
                           top_logprobs=[_top(top) for top in entry.get("top_logprobs") or []])


def _call_piece(piece: dict[str, Any]) -> pb.ToolCallDelta:
    function = piece.get("function") or {}
    return pb.ToolCallDelta(index=piece.get("index", 0), id=piece.get("id") or "", name=function.get("name") or "",
                            arguments=function.get("arguments") or "")


def chat_responses(chunk: dict[str, Any]) -> list[pb.ChatResponse]:
    """The contract's messages for one streamed REST chat chunk: one per choice, or the usage."""
    head = {"id": chunk["id"], "model": chunk["model"], "created": chunk["created"]}
    out = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        message = pb.ChatDelta(index=choice["index"], role=_ROLE_OF.get(delta.get("role") or "", 0),
                               text=delta.get("content") or "",
                               tool_calls=[_call_piece(piece) for piece in delta.get("tool_calls") or []],
                               logprobs=[_token_logprob(e) for e in (choice.get("logprobs") or {}).get("content") or []],
                               finish_reason=FINISH_REASONS.get(choice.get("finish_reason") or "", 0))
        out.append(pb.ChatResponse(**head, delta=message))
    if chunk.get("usage"):
        out.append(pb.ChatResponse(**head, usage=_usage(chunk["usage"])))
    return out


def _completion_logprobs(logprobs: dict[str, Any] | None) -> list[pb.CompletionTokenLogprob]:
    if not logprobs:
        return []
    entries = []
    for token, logprob, top, offset in zip(logprobs["tokens"], logprobs["token_logprobs"],
                                           logprobs["top_logprobs"], logprobs["text_offset"], strict=True):
        entry = pb.CompletionTokenLogprob(token=token, top_logprobs=top or {}, text_offset=offset)
        if logprob is not None:
            entry.logprob = logprob
        entries.append(entry)
    return entries


def complete_responses(chunk: dict[str, Any]) -> list[pb.CompleteResponse]:
    head = {"id": chunk["id"], "model": chunk["model"], "created": chunk["created"]}
    out = [pb.CompleteResponse(**head, delta=pb.CompleteDelta(
        index=choice["index"], text=choice.get("text") or "", logprobs=_completion_logprobs(choice.get("logprobs")),
        finish_reason=FINISH_REASONS.get(choice.get("finish_reason") or "", 0)))
        for choice in chunk.get("choices") or []]
    if chunk.get("usage"):
        out.append(pb.CompleteResponse(**head, usage=_usage(chunk["usage"])))
    return out


def embed_response(body: dict[str, Any]) -> pb.EmbedResponse:
    return pb.EmbedResponse(model=body["model"], usage=_usage(body.get("usage") or {}),
                            embeddings=[pb.Embedding(index=item["index"], values=item["embedding"])
                                        for item in body["data"]])


def models_response(body: dict[str, Any]) -> pb.ListModelsResponse:
    return pb.ListModelsResponse(models=[pb.Model(id=m["id"], created=m["created"], owned_by=m["owned_by"])
                                         for m in body["data"]])
