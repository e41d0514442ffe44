"""Protobuf chat messages and tools into the plain dicts chat templates read, shaped as OpenAI shapes them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ingot.common.errors import InvalidArgument
from ingot.common.v1 import common_pb2

ROLES = ("system", "user", "assistant", "tool")


def _arguments(text: str) -> Any:
    # Templates written for transformers iterate or `tojson` the arguments as a mapping; a text that is not
    # a JSON object (a model's truncated call, say) goes through as the string it is.
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def _tool_call(call: common_pb2.ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": call.type or "function",
        "function": {"name": call.function.name, "arguments": _arguments(call.function.arguments)},
    }


def template_messages(messages: Sequence[common_pb2.ChatMessage]) -> list[dict[str, Any]]:
    """One dict per message: role and content (None when absent) always, the other fields when set."""
    if not messages:
        raise InvalidArgument("messages must hold at least one message.", param="messages")
    chat = []
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise InvalidArgument(
                f"Invalid value {message.role!r} for messages[{i}].role: expected one of {', '.join(ROLES)}.",
                param=f"messages[{i}].role",
            )
        entry: dict[str, Any] = {
            "role": message.role,
            "content": message.content if message.HasField("content") else None,
        }
        if message.name:
            entry["name"] = message.name
        if message.tool_calls:
            entry["tool_calls"] = [_tool_call(call) for call in message.tool_calls]
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        chat.append(entry)
    return chat


def parse_tools(tools_json: str) -> list[dict[str, Any]] | None:
    """The tool definitions, or None when there are none (templates test `tools` for truth or none)."""
    if not tools_json.strip():
        return None
    try:
        tools = json.loads(tools_json)
    except ValueError as exc:
        raise InvalidArgument(f"tools is not valid JSON: {exc}", param="tools") from None
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise InvalidArgument("tools must be a JSON array of objects.", param="tools")
    return tools or None
