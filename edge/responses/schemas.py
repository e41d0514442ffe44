"""The body of POST /v1/responses, as far as this server supports it.

Input items stay plain dicts here: their many shapes are checked one by one in `items`, where an error can
name the item it is about. Tools other than functions are kept unvalidated, because they are ignored: Codex
and the Agents SDK send hosted tool types (web_search, custom, namespace...) that ingot does not run, and
refusing them would refuse those clients outright.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from edge.responses.adapter import NAME_PATTERN, UINT32_MAX, RequestModel

# Include values that ask for parts of outputs this server never produces (reasoning, hosted tool calls):
# there is nothing to add, so asking is harmless. Codex asks for reasoning.encrypted_content.
HARMLESS_INCLUDES = frozenset((
    "reasoning.encrypted_content", "web_search_call.results", "web_search_call.action.sources",
    "file_search_call.results", "code_interpreter_call.outputs", "computer_call_output.output.image_url",
    "message.input_image.image_url",
))


class TextFormat(RequestModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, pattern=NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_fields_with_json_schema(self) -> TextFormat:
        if self.type == "json_schema" and self.name is None:
            raise PydanticCustomError("format_name", "a json_schema format needs a 'name'")
        if self.type != "json_schema" and (self.name or self.schema_ is not None or self.strict is not None):
            raise PydanticCustomError("format_fields", "name, schema and strict go with type 'json_schema' only")
        return self


class TextConfig(RequestModel):
    format: TextFormat | None = None


class Reasoning(RequestModel):
    """Accepted so that clients configured for reasoning models still work; ingot's models do not reason, so
    no reasoning item is ever produced and reasoning_tokens is 0."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(RequestModel):
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    previous_response_id: str | None = Field(None, min_length=1)
    store: bool | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    # Checked in `items`: its forms depend on the tools.
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(None, gt=0, le=UINT32_MAX)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    include: list[str] | None = None
    reasoning: Reasoning | None = None
    user: str | None = Field(None, max_length=256)
    safety_identifier: str | None = Field(None, max_length=256)
    # Codex sends one per session; the engine's prefix cache needs no key, so it is only echoed.
    prompt_cache_key: str | None = Field(None, max_length=1024)
    # Only the values that describe what this server does anyway.
    truncation: Literal["disabled"] | None = None
    background: Literal[False] | None = None
    service_tier: Literal["auto", "default"] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _items_are_objects(cls, value: Any) -> Any:
        if isinstance(value, list) and not all(isinstance(item, dict) for item in value):
            raise PydanticCustomError("input_shape", "expected a string or an array of input items (objects)")
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _tools_have_types(cls, value: Any) -> Any:
        if isinstance(value, list) and not all(isinstance(tool, dict) and isinstance(tool.get("type"), str)
                                               for tool in value):
            raise PydanticCustomError("tool_shape", "every tool is an object with a string 'type'")
        return value

    @field_validator("include")
    @classmethod
    def _includes_are_harmless(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if name not in HARMLESS_INCLUDES:
                raise PydanticCustomError("include", "'{name}' cannot be included by this server (supported: "
                                          "{known})", {"name": name, "known": ", ".join(sorted(HARMLESS_INCLUDES))})
        return value

    @property
    def stores(self) -> bool:
        # OpenAI's default: the Agents SDK relies on it when it continues with previous_response_id.
        return self.store is not False

