"""Responses input items into the chat request the pipeline answers, and the items a response stores.

A response stores its resolved input: the previous response's input and output followed by the new input,
every item with an id. Continuing a conversation is then one lookup, never a walk along a chain.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from edge.responses.schemas import ResponsesRequest
from ingot.common.errors import InvalidArgument

# Items of tools ingot does not run (they come back in Codex's and the Agents SDK's histories): dropped from
# the prompt as their tools are ignored, rather than refusing the whole conversation.
FOREIGN_ITEMS = frozenset((
    "web_search_call", "file_search_call", "computer_call", "computer_call_output", "image_generation_call",
    "code_interpreter_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
    "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output", "compaction",
))
_ROLES = ("user", "system", "developer", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "custom_tool_call": "ctc",
                "custom_tool_call_output": "ctco"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _bad(where: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"Invalid value for '{where}': {message}", param=where)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"Invalid type for '{where}': expected a string.", param=where)
    return value


def _parts(content: Any, role: str, where: str) -> list[dict[str, Any]]:
    """A message's content as typed parts: input_text for the client's roles, output_text for the assistant."""
    kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        return [_part(kind, content)]
    if not isinstance(content, list):
        raise InvalidArgument(f"Invalid type for '{where}': expected a string or an array of content parts.",
                              param=where)
    parts = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        if not isinstance(part, dict):
            raise InvalidArgument(f"Invalid type for '{at}': expected an object.", param=at)
        part_type = part.get("type")
        if part_type in ("input_image", "input_file", "input_audio"):
            raise _bad(f"{at}.type", f"'{part_type}' parts are not supported by this server yet; only text is.")
        if part_type not in _TEXT_PARTS:
            raise _bad(f"{at}.type", f"expected one of {', '.join(_TEXT_PARTS)}, got {part_type!r}.")
        text = part.get("refusal") if part_type == "refusal" else part.get("text")
        parts.append(_part(kind, _text(text, f"{at}.{'refusal' if part_type == 'refusal' else 'text'}")))
    return parts


def _part(kind: str, text: str) -> dict[str, Any]:
    return {"type": kind, "text": text, "annotations": []} if kind == "output_text" else {"type": kind, "text": text}


def _item(raw: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    """One input item in its stored form, or None for an item that does not reach the prompt."""
    kind = raw.get("type", "message" if "role" in raw else None)
    if not isinstance(kind, str):
        raise InvalidArgument(f"Missing required parameter: '{where}.type' (a string naming the item's type).",
                              param=f"{where}.type")
    if kind in FOREIGN_ITEMS or kind == "reasoning":
        return None
    if kind == "message":
        role = raw.get("role")
        if role not in _ROLES:
            raise _bad(f"{where}.role", f"expected one of {', '.join(_ROLES)}, got {role!r}.")
        if "content" not in raw:
            raise InvalidArgument(f"Missing required parameter: '{where}.content'.", param=f"{where}.content")
        return {"type": "message", "role": role, "content": _parts(raw["content"], role, f"{where}.content"),
                "status": "completed"}
    if kind == "function_call":
        return {"type": "function_call", "call_id": _text(raw.get("call_id"), f"{where}.call_id"),
                "name": _text(raw.get("name"), f"{where}.name"),
                "arguments": _text(raw.get("arguments"), f"{where}.arguments"), "status": "completed"}
    if kind == "custom_tool_call":
        return {"type": "custom_tool_call", "call_id": _text(raw.get("call_id"), f"{where}.call_id"),
                "name": _text(raw.get("name"), f"{where}.name"), "input": _text(raw.get("input"), f"{where}.input")}
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = raw.get("output")
        if isinstance(output, list):
            output = "\n".join(part.get("text", "") for part in output if isinstance(part, dict))
        return {"type": kind, "call_id": _text(raw.get("call_id"), f"{where}.call_id"),
                "output": _text(output, f"{where}.output"), "status": "completed"}
    raise _bad(f"{where}.type", f"the input item type {kind!r} is not supported.")


def resolve_input(request: ResponsesRequest, history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation so far (`history`: the previous response's input and output) and the request's new
    input, each item with an id; item references point into the history."""
    items = [dict(item) for item in history]
    known = {item["id"]: item for item in items if "id" in item}
    raw_items = [{"type": "message", "role": "user", "content": request.input}] if isinstance(
        request.input, str) else request.input
    for index, raw in enumerate(raw_items):
        where = f"input[{index}]"
        if raw.get("type") == "item_reference":
            item_id = raw.get("id")
            if not isinstance(item_id, str) or item_id not in known:
                raise _bad(f"{where}.id", f"no item {item_id!r} in the conversation of previous_response_id.")
            items.append(dict(known[item_id]))
            continue
        item = _item(raw, where)
        if item is not None:
            # A client's own id is kept: Codex on Azure sends ids and may refer to them.
            given = raw.get("id")
            item["id"] = given if isinstance(given, str) and given else new_id(_ID_PREFIXES[item["type"]])
            items.append(item)
    return items


def chat_messages(instructions: str | None, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages for the items: calls join the assistant turn before them, outputs become tool messages."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        kind = item["type"]
        if kind == "message":
            messages.append({"role": item["role"], "content": "\n".join(part["text"] for part in item["content"])})
        elif kind in ("function_call", "custom_tool_call"):
            arguments = item["arguments"] if kind == "function_call" else json.dumps({"input": item["input"]})
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": arguments}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return messages


def function_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[tuple[int, dict[str, Any]]]:
    """The function tools, with their position in `tools`; every other tool type is ignored."""
    return [(index, dict(tool)) for index, tool in enumerate(tools or ()) if tool.get("type") == "function"]


def chat_tool_choice(choice: str | Mapping[str, Any] | None, names: Sequence[str]) -> tuple[Any, list[str]]:
    """tool_choice in chat's form, and the functions it allows."""
    if choice is None or isinstance(choice, str):
        if choice not in (None, "none", "auto", "required"):
            raise _bad("tool_choice", f"expected 'none', 'auto', 'required' or an object, got {choice!r}.")
        if choice == "required" and not names:
            raise _bad("tool_choice", "'required' needs at least one function tool in 'tools'.")
        return choice, list(names)
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name")
        if name not in names:
            raise _bad("tool_choice", f"there is no function named {name!r} in 'tools'.")
        return {"type": "function", "function": {"name": name}}, list(names)
    if kind == "allowed_tools":
        mode = choice.get("mode", "auto")
        listed = choice.get("tools")
        allowed = [tool.get("name") for tool in listed if isinstance(tool, dict) and tool.get("type") == "function"
                   ] if isinstance(listed, list) else []
        if mode not in ("auto", "required") or not allowed or any(name not in names for name in allowed):
            raise _bad("tool_choice", "allowed_tools needs a mode of 'auto' or 'required' and function tools "
                       "that 'tools' defines.")
        return mode, allowed
    raise _bad("tool_choice", f"this server runs function tools only; it cannot be made to call a {kind!r} tool.")


def _response_format(request: ResponsesRequest) -> dict[str, Any] | None:
    text_format = request.text.format if request.text is not None else None
    if text_format is None or text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return {"type": "json_object"}
    schema = {"name": text_format.name, "strict": text_format.strict, "description": text_format.description}
    if text_format.schema_ is not None:
        schema["schema"] = text_format.schema_
    return {"type": "json_schema", "json_schema": {key: value for key, value in schema.items() if value is not None}}


def chat_body(request: ResponsesRequest, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The chat completions request that answers `request` over the conversation `items`."""
    messages = chat_messages(request.instructions, items)
    if not any(message["role"] != "system" for message in messages):
        raise InvalidArgument("Missing required parameter: 'input' (the conversation has no message to answer).",
                              param="input")
    tools = [tool for _, tool in function_tools(request.tools)]
    choice, allowed = chat_tool_choice(request.tool_choice, [tool.get("name") for tool in tools])
    body: dict[str, Any] = {"model": request.model, "messages": messages,
                            "max_completion_tokens": request.max_output_tokens, "temperature": request.temperature,
                            "top_p": request.top_p, "user": request.user,
                            "response_format": _response_format(request)}
    if tools:
        body["tools"] = [{"type": "function", "function": {key: value for key, value in tool.items()
                                                           if key != "type"}}
                         for tool in tools if tool.get("name") in allowed]
        body["tool_choice"] = choice
        body["parallel_tool_calls"] = request.parallel_tool_calls
    return {key: value for key, value in body.items() if value is not None}


_CHAT_PARAM = re.compile(r"^(messages|tools\[(\d+)\]\.function|tools|tool_choice|response_format|"
                         r"max_completion_tokens)(.*)$")


def responses_param(param: str | None, request: ResponsesRequest) -> str | None:
    """A chat request's parameter in the terms of the Responses request it was made from."""
    match = _CHAT_PARAM.match(param or "")
    if match is None:
        return param
    head, tool, rest = match.groups()
    if head == "messages":
        return "input"
    if tool is not None:
        positions = [index for index, _ in function_tools(request.tools)]
        position = positions[int(tool)] if int(tool) < len(positions) else int(tool)
        return f"tools[{position}]{rest}"
    if head == "response_format":
        return "text.format"
    return {"max_completion_tokens": "max_output_tokens"}.get(head, head) + rest
