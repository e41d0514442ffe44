"""The one text format of a tool call, shared by the tokenizer (which writes it into prompts) and the
inference service (whose grammar forces it and whose parser reads it back).

It is the Hermes format that Qwen 2.5 and NousResearch templates describe: each call is a JSON object with
the function's name first and its arguments second, between text markers on their own lines:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

Several calls follow each other, one newline apart. The markers are text, not special tokens, so the
format works with any tokenizer; the grammar, not the model, guarantees that a call is well formed.
The JSON is compact with Python's spacing (", " and ": "), which is how templates' `tojson` writes the
calls in a conversation's history, so the model sees the same spelling it is made to produce.
"""

from __future__ import annotations

import json
from typing import Any

CALL_OPEN = "<tool_call>\n"
CALL_CLOSE = "\n</tool_call>"
# Between two calls of one answer.
CALL_SEPARATOR = "\n"
# Where a conversation's tool results go when the template has no tool role of its own.
RESPONSE_OPEN = "<tool_response>\n"
RESPONSE_CLOSE = "\n</tool_response>"

ITEM_SEPARATOR = ", "
KEY_SEPARATOR = ": "

# llguidance's JSON options (the schema's top-level "x-guidance"): no free whitespace, Python's spacing.
# Free whitespace lets a small model wander into endless newlines inside an object.
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ITEM_SEPARATOR, "key_separator": KEY_SEPARATOR}


def dumps(value: Any) -> str:
    """JSON in the layout the grammar enforces."""
    return json.dumps(value, ensure_ascii=False, separators=(ITEM_SEPARATOR, KEY_SEPARATOR))


def call_text(name: str, arguments: Any) -> str:
    """One call as the model writes it; `arguments` is the decoded JSON value (or a text it could not be)."""
    return f'{CALL_OPEN}{{"name": {dumps(name)}, "arguments": {dumps(arguments)}}}{CALL_CLOSE}'
