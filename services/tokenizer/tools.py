"""Tools in prompts whose chat template knows nothing of tools.

A template that renders `tools` (Qwen, Hermes, Llama 3.1...) gets the tools and the calls in the history
as they are. One that ignores them (SmolLM2's, and most small models') would silently drop the functions
the model is asked to call, and could not render an assistant turn that holds only calls. For those
templates the conversation is rewritten before rendering, in ingot's one call format
(ingot.common.toolformat), so it works with any template:

- the function signatures go into the system message (a new one when the conversation has none), with
  the exact format a call takes;
- an assistant turn's calls become its text, each call in its markers;
- tool results become a user turn, each result between <tool_response> markers, consecutive results
  together, so templates that insist on alternating roles still render them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from ingot.common import toolformat
from services.tokenizer import chat_template

# A conversation and tool that any tools-aware template renders differently from the same conversation alone.
_PROBE_MESSAGES = ({"role": "user", "content": "ping"},)
_PROBE_TOOLS = ({"type": "function", "function": {"name": "probe_tool_7f3a", "description": "probe",
                                                  "parameters": {"type": "object", "properties": {}}}},)

TOOLS_SECTION = """# Tools

You can call functions to help answer the user. Their signatures are inside <tools></tools> tags, one per line:
<tools>
{signatures}
</tools>

To call a function, answer with a JSON object holding its name and its arguments inside <tool_call></tool_call> \
tags, one call per pair of tags:
<tool_call>
{{"name": <function-name>, "arguments": <arguments-json-object>}}
</tool_call>"""


@functools.lru_cache(maxsize=64)
def renders_tools(template: jinja2.Template) -> bool:
    """Whether the template writes tool definitions into the prompt itself."""
    try:
        bare = chat_template.render(template, _PROBE_MESSAGES)
        with_tools = chat_template.render(template, _PROBE_MESSAGES, tools=_PROBE_TOOLS)
    except chat_template.TemplateRenderError:
        # A template that raises on tools (or on the probe) cannot be trusted with them either.
        return False
    return bare != with_tools


def tools_section(tools: Sequence[Mapping[str, Any]]) -> str:
    return TOOLS_SECTION.format(signatures="\n".join(toolformat.dumps(tool) for tool in tools))


def _call(call: Mapping[str, Any]) -> str:
    function = call.get("function") or {}
    return toolformat.call_text(function.get("name", ""), function.get("arguments"))


def inline(chat: Sequence[dict[str, Any]], tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The conversation with tools, calls and tool results written as text in ingot's call format."""
    out: list[dict[str, Any]] = []
    for message in chat:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            parts = [message["content"]] if message.get("content") else []
            parts.extend(_call(call) for call in message["tool_calls"])
            out.append({"role": "assistant", "content": "\n".join(parts)})
        elif role == "tool":
            result = f"{toolformat.RESPONSE_OPEN}{message.get('content') or ''}{toolformat.RESPONSE_CLOSE}"
            previous = out[-1] if out else None
            if previous is not None and previous.get("_tool_results"):
                previous["content"] += "\n" + result
            else:
                out.append({"role": "user", "content": result, "_tool_results": True})
        else:
            out.append(dict(message))
    for message in out:
        message.pop("_tool_results", None)
    if tools:
        section = tools_section(tools)
        if out and out[0]["role"] == "system":
            system = out[0].get("content") or ""
            out[0] = {**out[0], "content": f"{system}\n\n{section}" if system else section}
        else:
            out.insert(0, {"role": "system", "content": section})
    return out


def needs_inlining(chat: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None) -> bool:
    return bool(tools) or any(m.get("tool_calls") or m["role"] == "tool" for m in chat)
