"""OpenAI's chat and text completion request and response bodies, as far as this server supports them,
and the tokenizer routes' bodies.

Requests forbid unknown fields (an unsupported parameter is an error, never silently dropped) and
validate strictly, as OpenAI does: "0.5" is not a temperature. Responses are serialized from these
models so that every route emits the same field names and nulls.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator
from pydantic_core import PydanticCustomError

# The protobuf fields they travel in are uint32.
UINT32_MAX = 2**32 - 1


class RequestModel(BaseModel):
    """A request body: unknown fields forbidden, types strict, null meaning absent."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # Clients serialize unset options as null ("stop": null); that asks for nothing, so it is not an
        # unsupported parameter. Any real value of an unknown field still fails as extra_forbidden.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None or key in cls.model_fields}
        return data


class TextPart(RequestModel):
    type: Literal["text"]
    text: str

    @field_validator("type", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "text":
            raise PydanticCustomError("unsupported_part", "'{kind}' parts are not supported by this server yet; "
                                      "only 'text' parts are", {"kind": value})
        return value


class FunctionCall(RequestModel):
    name: str
    arguments: str


class ToolCall(RequestModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(RequestModel):
    # "developer" is OpenAI's newer name for the system role; templates know only "system". "function" is
    # the result of a legacy function_call, as "tool" is of a tool call.
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    # A plain string arrives as one text part: templates see the same text either way, and keeping the
    # field a single list type (not a union) keeps pydantic's error locations free of union member names.
    content: list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # The legacy form of one tool call.
    function_call: FunctionCall | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _string_is_one_part(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        if value is not None and not isinstance(value, list):
            raise PydanticCustomError("content_type", "expected a string or an array of text parts")
        return value

    def text(self) -> str | None:
        if self.content is None:
            return None
        return "\n".join(part.text for part in self.content)


# OpenAI's rule for function and response format names.
NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionDefinition(RequestModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    # A JSON Schema of the arguments object; absent, the function takes none.
    parameters: dict[str, Any] | None = None
    # OpenAI's opt-in to exact adherence; here every call adheres, strict or not (constrained decoding).
    strict: bool | None = None


class Tool(RequestModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(RequestModel):
    name: str


def _mode_object(value: Any, modes: tuple[str, ...], key: str, what: str) -> Any:
    """OpenAI's string modes ("auto") as the object form a single model validates, {key: "auto"}."""
    if isinstance(value, str):
        if value not in modes:
            raise PydanticCustomError("mode", "expected {what}, got '{value}'", {"what": what, "value": value})
        return {key: value}
    return value


class ToolChoice(RequestModel):
    """tool_choice: "none", "auto" and "required" arrive as {"type": mode}; a named function as OpenAI
    writes it, {"type": "function", "function": {"name": ...}}."""

    type: Literal["none", "auto", "required", "function"]
    function: FunctionName | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return _mode_object(value, ("none", "auto", "required"), "type",
                            "'none', 'auto', 'required' or a named function")

    @model_validator(mode="after")
    def _function_when_named(self) -> ToolChoice:
        if (self.type == "function") != (self.function is not None):
            raise PydanticCustomError("tool_choice", "a named tool choice is {\"type\": \"function\", "
                                      "\"function\": {\"name\": ...}}; other choices name no function")
        return self


class FunctionCallChoice(RequestModel):
    """The legacy function_call: "none" and "auto" arrive as {"mode": ...}, {"name": ...} forces a function."""

    mode: Literal["none", "auto"] | None = None
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return _mode_object(value, ("none", "auto"), "mode", "'none', 'auto' or {\"name\": ...}")


class JsonSchemaFormat(RequestModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    # Absent: any JSON object.
    schema_: dict[str, Any] | bool | None = Field(None, alias="schema")
    # As for tools: the output always adheres, strict or not.
    strict: bool | None = None


class ResponseFormat(RequestModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(RequestModel):
    include_usage: bool | None = None


MAX_CHOICES = 16


class SamplingFields(RequestModel):
    """The sampling parameters chat and text completions share, validated as OpenAI does."""

    max_tokens: int | None = Field(None, gt=0, le=UINT32_MAX)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    # Not OpenAI's, but vLLM's and Databricks': clients coming from them send it.
    top_k: int | None = Field(None, gt=0, le=UINT32_MAX)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    # Foundry Local's name for seed.
    random_seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    # Token ids (as JSON object keys) to a bias in [-100, 100].
    logit_bias: dict[str, float] | None = None
    stop: list[str] | None = Field(None, max_length=4)
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _stops_are_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not stop for stop in value):
            raise PydanticCustomError("empty_stop", "stop sequences must not be empty")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _token_ids_to_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.isdigit() or int(key) > UINT32_MAX:
                raise PydanticCustomError("logit_bias_key", "keys must be token ids, got {key!r}", {"key": key})
            if not -100 <= bias <= 100:
                raise PydanticCustomError("logit_bias_value", "biases must be between -100 and 100, got {bias}",
                                          {"bias": bias})
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def choices(self) -> int:
        return self.n or 1


class ChatCompletionRequest(SamplingFields):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0, le=UINT32_MAX)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # OpenAI's: up to 16 string pairs, stored with the request; here they are logged with it.
    metadata: dict[str, str] | None = Field(None, max_length=16)
    # Foundry Local's: seconds the model stays loaded after this request, and the execution provider.
    ttl: int | None = Field(None, ge=0, le=UINT32_MAX)
    ep: str | None = Field(None, min_length=1)
    tools: list[Tool] | None = Field(None, min_length=1, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # The legacy form of tools and tool_choice.
    functions: list[FunctionDefinition] | None = Field(None, min_length=1, max_length=128)
    function_call: FunctionCallChoice | None = None
    response_format: ResponseFormat | None = None

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


# OpenAI caps the legacy completions logprobs at 5 alternatives.
MAX_COMPLETION_LOGPROBS = 5
# Prompts in one completions batch, and choices across the batch: one engine serves them all at once.
MAX_PROMPTS = 64
MAX_BATCH_CHOICES = 64


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(token, int) and not isinstance(token, bool) and 0 <= token <= UINT32_MAX for token in value)


class CompletionRequest(SamplingFields):
    """OpenAI's legacy completions with Databricks' completions-task extras (use_raw_prompt, error_behavior)."""

    model: str = Field(min_length=1)
    # Always a batch here: one string or one token-id list arrives as a batch of one.
    prompt: list[str | list[int]]
    suffix: str | None = None
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    use_raw_prompt: bool | None = None
    error_behavior: Literal["error", "truncate"] | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt_is_a_batch(cls, value: Any) -> Any:
        # Checked by hand rather than by a union of shapes, so an error names `prompt` and says what a
        # prompt may be instead of listing every shape pydantic tried.
        if isinstance(value, str) or (_token_ids(value) and value):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) or _token_ids(item) for item in value):
            raise PydanticCustomError("prompt_shape", "expected a string, an array of strings, an array of token "
                                      "ids, or an array of token-id arrays")
        if not value:
            raise PydanticCustomError("prompt_empty", "the prompt must not be empty")
        if any(isinstance(item, list) and not item for item in value):
            raise PydanticCustomError("prompt_empty", "a token-id prompt must hold at least one token")
        if len(value) > MAX_PROMPTS:
            raise PydanticCustomError("prompt_batch", "a batch holds at most {limit} prompts, got {count}",
                                      {"limit": MAX_PROMPTS, "count": len(value)})
        return value

    @property
    def truncate(self) -> bool:
        return self.error_behavior == "truncate"


class TokenizeRequest(RequestModel):
    """vLLM's /tokenize: a raw prompt, or messages rendered through the chat template."""

    model: str = Field(min_length=1)
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    # vLLM's defaults: true for a prompt; for messages the template writes the special tokens itself.
    add_special_tokens: bool | None = None
    add_generation_prompt: bool | None = None
    continue_final_message: bool | None = None


class DetokenizeRequest(RequestModel):
    model: str = Field(min_length=1)
    tokens: list[int]

    @field_validator("tokens", mode="before")
    @classmethod
    def _are_token_ids(cls, value: Any) -> Any:
        if not _token_ids(value):
            raise PydanticCustomError("token_ids", "expected an array of token ids")
        return value


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    # None when the answer is only calls, as OpenAI sends it.
    content: str | None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None

    @model_serializer(mode="wrap")
    def _calls_when_made(self, handler):
        # content is always there (null for an answer of calls only); the calls only when there are some.
        body = handler(self)
        for key in ("tool_calls", "function_call"):
            if body.get(key) is None:
                body.pop(key, None)
        return body


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


def _set_fields(model: BaseModel) -> dict[str, Any]:
    # OpenAI's deltas carry only what is new: {} on the chunk that ends a choice.
    return {key: getattr(model, key) for key in type(model).model_fields if getattr(model, key) is not None}


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None

    @model_serializer
    def _only_what_changed(self) -> dict[str, Any]:
        return _set_fields(self)


class ToolCallDelta(BaseModel):
    """A piece of a call: the first carries its id, type and name; the next ones fragments of its arguments."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None

    @model_serializer
    def _only_what_changed(self) -> dict[str, Any]:
        return _set_fields(self)


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    # The legacy form, for requests that sent `functions`.
    function_call: FunctionCallDelta | None = None

    @model_serializer
    def _only_what_changed(self) -> dict[str, Any]:
        return _set_fields(self)


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    # OpenAI sends "usage": null on every chunk when include_usage is on, and no key otherwise.
    usage: Usage | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class CompletionLogprobs(BaseModel):
    """OpenAI's legacy logprobs: parallel lists, one entry per token of the choice's text."""

    tokens: list[str]
    # null for the first token of an echoed prompt, which nothing came before to score it.
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    # Where each token starts in the choice's text, in characters.
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    # null on every streamed chunk but a choice's last.
    finish_reason: str | None = None


class TextCompletion(BaseModel):
    """A completions answer, and each chunk of a streamed one."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TokenCount(BaseModel):
    tokenCount: int  # noqa: N815 - Foundry Local's name


class Tokenized(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]


class Detokenized(BaseModel):
    prompt: str
