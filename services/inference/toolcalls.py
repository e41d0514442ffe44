"""Tool calls by construction: the grammar that lets a model write only well-formed calls, and the parser
that reads them back out of its text as it streams.

Both follow ingot's one call format (ingot.common.toolformat), so they live together: the parser can be
simple because the grammar leaves the model no other way to write a call. Each call's JSON is
`{"name": ..., "arguments": ...}` with the name first (llguidance keeps the schema's property order) and
no free whitespace, so the parser knows a call's name before its arguments start, and knows where they
end: at the first `}` + CALL_CLOSE, which cannot occur inside JSON (a string cannot hold a raw newline).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from ingot.common import toolformat
from ingot.common.errors import InvalidArgument
from ingot.inference.v1 import inference_service_pb2 as pb

# OpenAI's rule for function names; it also keeps names free of anything JSON would escape.
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The marker without its newline: no answer text may contain it, so text never passes for a call.
_MARKER = toolformat.CALL_OPEN.strip()


def with_json_layout(schema: Any) -> Any:
    """The schema with ingot's JSON layout for llguidance, unless it sets its own."""
    if schema is True:
        return {"x-guidance": toolformat.JSON_LAYOUT}
    if isinstance(schema, dict) and "x-guidance" not in schema:
        return {**schema, "x-guidance": toolformat.JSON_LAYOUT}
    return schema


def _rebased(schema: Any, base: str) -> Any:
    """The schema with its local references ("#/...") pointing into `base`, where it is moved to."""
    if isinstance(schema, list):
        return [_rebased(item, base) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str) and value.startswith("#"):
            out[key] = base + value[1:]
        elif key in ("const", "enum", "default", "examples"):
            out[key] = value  # data, not schema
        else:
            out[key] = _rebased(value, base)
    return out


def _parameters(function: pb.FunctionDefinition, index: int) -> Any:
    if not function.parameters_json.strip():
        return {"type": "object", "properties": {}, "additionalProperties": False}
    try:
        parameters = json.loads(function.parameters_json)
    except ValueError as exc:
        raise InvalidArgument(f"The parameters of function '{function.name}' are not JSON: {exc}",
                              param=f"tools.functions[{index}].parameters_json") from None
    if not isinstance(parameters, (dict, bool)):
        raise InvalidArgument(f"The parameters of function '{function.name}' must be a JSON Schema object.",
                              param=f"tools.functions[{index}].parameters_json")
    # Arguments are an object whatever else the schema says (OpenAI's arguments are one); a sibling
    # keyword intersects with anyOf, allOf and $ref.
    if parameters is True:
        return {"type": "object"}
    if isinstance(parameters, dict) and "type" not in parameters:
        return {**parameters, "type": "object"}
    return parameters


def call_schema(functions: list[pb.FunctionDefinition]) -> dict[str, Any]:
    """The JSON Schema of one call of any of `functions`. Each function's parameters move under $defs
    (their own references rebased), so schemas with $defs of the same names cannot collide."""
    defs, options = {}, []
    for index, function in enumerate(functions):
        key = f"function_{index}"
        defs[key] = _rebased(_parameters(function, index), f"#/$defs/{key}")
        options.append({"type": "object",
                        "properties": {"name": {"const": function.name}, "arguments": {"$ref": f"#/$defs/{key}"}},
                        "required": ["name", "arguments"], "additionalProperties": False})
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return with_json_layout({**schema, "$defs": defs})


def _literal(text: str) -> str:
    return json.dumps(text)


def _regex_escape(text: str) -> str:
    # Only regex syntax: Rust's regex gives some escaped letters and `\<` meanings of their own.
    return re.sub(r"([\\.+*?()|\[\]{}^$#&\-~/])", r"\\\1", text)


def grammar(tools: pb.Tools, answer_schema: Any | None = None) -> str:
    """The Lark grammar (llguidance's dialect) of every answer `tools` allows. `answer_schema`, a
    response format's JSON Schema, shapes the answers that are not calls."""
    choice = tools.choice or pb.TOOL_CHOICE_AUTO
    functions = list(tools.functions)
    if choice == pb.TOOL_CHOICE_FUNCTION:
        functions = [f for f in functions if f.name == tools.function_name]
    # Any text that does not hold the marker: prose can neither fake a call nor leak a marker.
    no_marker = f"/(?s:.*)/ & ~/(?s:.*){_regex_escape(_MARKER)}(?s:.*)/"
    rules = [
        f"CALL_OPEN: {_literal(toolformat.CALL_OPEN)}",
        f"CALL_CLOSE: {_literal(toolformat.CALL_CLOSE)}",
        f"CALL_SEPARATOR: {_literal(toolformat.CALL_SEPARATOR)}",
        "call: CALL_OPEN body CALL_CLOSE",
        f"body: %json {json.dumps(call_schema(functions))}",
    ]
    many = tools.parallel_calls and choice in (pb.TOOL_CHOICE_AUTO, pb.TOOL_CHOICE_REQUIRED)
    more = " (CALL_SEPARATOR call)*" if many else ""
    if answer_schema is not None:
        rules.append(f"answer: %json {json.dumps(with_json_layout(answer_schema))}")
        text = "answer"
    else:
        rules.append(f"TEXT: /(?s:.+)/ & {no_marker}")
        text = "TEXT"
    if choice == pb.TOOL_CHOICE_NONE:
        start = text
    elif choice in (pb.TOOL_CHOICE_REQUIRED, pb.TOOL_CHOICE_FUNCTION):
        start = f"call{more}"
    elif answer_schema is not None:
        start = f"answer | call{more}"
    else:
        # Prose may come before the calls; LEAD is that prose with the first call's marker, one lexeme, so
        # the lexer need not decide where prose ends before the marker is complete.
        rules.append(f"LEAD: {no_marker} CALL_OPEN")
        start = f"TEXT | LEAD body CALL_CLOSE{more}"
    return "\n".join([f"start: {start}", *rules]) + "\n"


def check(tools: pb.Tools) -> None:
    """What the grammar and the parser rely on, checked before anything is admitted."""
    names = set()
    for index, function in enumerate(tools.functions):
        if not FUNCTION_NAME.fullmatch(function.name):
            raise InvalidArgument(f"Function name {function.name!r} must be 1 to 64 letters, digits, '_' or '-'.",
                                  param=f"tools.functions[{index}].name")
        if function.name in names:
            raise InvalidArgument(f"Function '{function.name}' is defined twice.", param=f"tools.functions[{index}].name")
        names.add(function.name)
        _parameters(function, index)
    if tools.choice == pb.TOOL_CHOICE_FUNCTION and tools.function_name not in names:
        raise InvalidArgument(f"The function to call, '{tools.function_name}', is not among the tools.",
                              param="tools.function_name")


def guidance(request: pb.GenerateRequest, constraint: tuple[str, str] | None) -> tuple[str, str] | None:
    """The request's guidance: its constraint alone, or the tools' grammar (with a JSON Schema constraint
    shaping the answers that are not calls)."""
    if not request.tools.functions:
        return constraint
    check(request.tools)
    answer_schema = None
    if constraint is not None:
        kind, text = constraint
        if kind != "json_schema":
            raise InvalidArgument(f"A {kind} constraint cannot be combined with tools; only json_schema can.",
                                  param="constraint")
        answer_schema = json.loads(text)
    return "lark_grammar", grammar(request.tools, answer_schema)


def parses_calls(request: pb.GenerateRequest) -> bool:
    return bool(request.tools.functions) and request.tools.choice != pb.TOOL_CHOICE_NONE


@dataclass
class Parsed:
    content: str = ""
    deltas: list[pb.ToolCallDelta] = field(default_factory=list)


def _held(text: str, marker: str) -> int:
    """The length of the longest end of `text` that could still grow into `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0


_HEAD = re.compile(r'\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')
_ARGUMENTS_END = "}" + toolformat.CALL_CLOSE
_NEXT_CALL = toolformat.CALL_SEPARATOR + toolformat.CALL_OPEN


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolCallParser:
    """Splits one choice's streamed text into its prose and its calls. Text that may be the start of a
    marker is held back until it is known not to be one, so a marker never reaches the prose."""

    def __init__(self) -> None:
        self._buffer = ""
        self._state = "prose"  # prose | head | arguments | between
        self.calls = 0

    def feed(self, text: str) -> Parsed:
        self._buffer += text
        parsed = Parsed()
        while self._step(parsed):
            pass
        return parsed

    def flush(self) -> Parsed:
        """The end of the choice: held prose was prose after all; a call cut short keeps what it has."""
        parsed = Parsed()
        if self._state == "prose":
            parsed.content = self._buffer
        elif self._state == "arguments" and self._buffer:
            parsed.deltas.append(pb.ToolCallDelta(index=self.calls, arguments=self._buffer))
        self._buffer = ""
        return parsed

    def _step(self, parsed: Parsed) -> bool:
        """Consumes what the current state can of the buffer; True when it moved to another state."""
        buffer = self._buffer
        if self._state == "prose":
            at = buffer.find(toolformat.CALL_OPEN)
            if at < 0:
                keep = _held(buffer, toolformat.CALL_OPEN)
                parsed.content += buffer[:len(buffer) - keep]
                self._buffer = buffer[len(buffer) - keep:]
                return False
            parsed.content += buffer[:at]
            return self._enter("head", buffer[at + len(toolformat.CALL_OPEN):])
        if self._state == "head":
            match = _HEAD.match(buffer)
            if match is None:
                return False
            name = json.loads(f'"{match.group(1)}"')
            parsed.deltas.append(pb.ToolCallDelta(index=self.calls, id=new_call_id(), name=name))
            return self._enter("arguments", buffer[match.end():])
        if self._state == "arguments":
            at = buffer.find(_ARGUMENTS_END)
            end = at if at >= 0 else len(buffer) - _held(buffer, _ARGUMENTS_END)
            if end:
                parsed.deltas.append(pb.ToolCallDelta(index=self.calls, arguments=buffer[:end]))
            if at < 0:
                self._buffer = buffer[end:]
                return False
            self.calls += 1
            return self._enter("between", buffer[at + len(_ARGUMENTS_END):])
        if buffer.startswith(_NEXT_CALL):
            return self._enter("head", buffer[len(_NEXT_CALL):])
        if _NEXT_CALL.startswith(buffer):
            return False
        # The grammar allows nothing else after a call; should a model get past it, its text is prose
        # rather than lost.
        return self._enter("prose", buffer)

    def _enter(self, state: str, buffer: str) -> bool:
        self._state = state
        self._buffer = buffer
        return True
