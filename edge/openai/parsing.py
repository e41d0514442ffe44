"""Request bodies into validated models, every failure a 400 that names the parameter as OpenAI does."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edge.openai.schema_support import check_request_schema
from edge.openai.schemas import (MAX_BATCH_CHOICES, ChatCompletionRequest, ChatMessage, CompletionRequest,
                                 DetokenizeRequest, FunctionDefinition, SamplingFields, TokenizeRequest)
from ingot.common.errors import InvalidArgument

M = TypeVar("M", bound=BaseModel)

BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you "
    "have trouble figuring out how to fix this, please contact the server's operator.)"
)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and a NaN temperature slips past range checks.
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # also UnicodeDecodeError, the constants above, absurd nesting
        raise InvalidArgument(BAD_JSON) from None
    if not isinstance(value, dict):
        raise InvalidArgument("The request body must be a JSON object.")
    try:
        # JSON lets "\ud800" stand alone, but a lone surrogate is not Unicode: it could never be answered
        # or streamed back as UTF-8, so it is refused here rather than failing mid-response.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("The request body holds a lone UTF-16 surrogate (such as \\ud800), which is not "
                              "valid Unicode.") from None
    return value


def param_path(loc: Sequence[int | str]) -> str:
    """pydantic's ("messages", 0, "role") as OpenAI writes it: messages[0].role."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


# pydantic describes types in Python's words ("a valid dictionary or instance of ChatMessage"); clients
# send JSON.
_JSON_TYPES = {
    "model_type": "an object", "dict_type": "an object", "list_type": "an array", "string_type": "a string",
    "int_type": "an integer", "float_type": "a number", "bool_type": "a boolean",
}


def _sentence(text: str) -> str:
    text = text[:1].lower() + text[1:]
    return text if text.endswith(".") else text + "."


def invalid_argument(error: ErrorDetails) -> InvalidArgument:
    param = param_path(error["loc"])
    kind = error["type"]
    if kind == "missing":
        message = f"Missing required parameter: '{param}'."
    elif kind == "extra_forbidden":
        message = f"Unsupported parameter: '{param}' is not supported by this server yet."
    elif kind in _JSON_TYPES:
        message = f"Invalid type for '{param}': expected {_JSON_TYPES[kind]}."
    elif kind.endswith("_type"):
        message = f"Invalid type for '{param}': {_sentence(error['msg'])}"
    else:
        message = f"Invalid value for '{param}': {_sentence(error['msg'])}"
    return InvalidArgument(message, param=param)


def validate(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # One error at a time, as OpenAI answers: the first is the one a client fixes first.
        raise invalid_argument(exc.errors()[0]) from None


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    request = validate(ChatCompletionRequest, parse_json_object(body))
    check_sampling(request)
    if request.top_logprobs is not None and not request.logprobs:
        raise InvalidArgument("Invalid value for 'top_logprobs': it requires 'logprobs' to be true.",
                              param="top_logprobs")
    if (request.max_tokens is not None and request.max_completion_tokens is not None
            and request.max_tokens != request.max_completion_tokens):
        raise InvalidArgument(
            f"max_tokens ({request.max_tokens}) and max_completion_tokens ({request.max_completion_tokens}) "
            "disagree; send only max_completion_tokens.", param="max_completion_tokens")
    for index, message in enumerate(request.messages):
        _check_message(f"messages[{index}]", message)
    _check_tools(request)
    _check_response_format(request)
    return request


def parse_completion_request(body: bytes) -> CompletionRequest:
    request = validate(CompletionRequest, parse_json_object(body))
    check_sampling(request)
    if request.suffix and request.echo:
        raise InvalidArgument("Invalid value for 'suffix': echo cannot be combined with a suffix; the prompt "
                              "is rewritten around the suffix, so there is no prompt text to echo.", param="suffix")
    choices = len(request.prompt) * request.choices
    if choices > MAX_BATCH_CHOICES:
        raise InvalidArgument(f"Invalid value for 'n': {len(request.prompt)} prompts with n={request.choices} make "
                              f"{choices} choices; at most {MAX_BATCH_CHOICES} are allowed in one request.",
                              param="n")
    return request


def parse_tokenize_request(body: bytes) -> TokenizeRequest:
    request = validate(TokenizeRequest, parse_json_object(body))
    if request.prompt is None and request.messages is None:
        raise InvalidArgument("Missing required parameter: 'prompt' (or 'messages').", param="prompt")
    if request.prompt is not None and request.messages is not None:
        raise InvalidArgument("Invalid value for 'messages': give either 'prompt' or 'messages', not both.",
                              param="messages")
    if request.messages is None:
        for name in ("add_generation_prompt", "continue_final_message"):
            if getattr(request, name) is not None:
                raise InvalidArgument(f"Invalid value for '{name}': it applies to 'messages' only.", param=name)
        return request
    for index, message in enumerate(request.messages):
        _check_message(f"messages[{index}]", message)
    if request.add_special_tokens:
        raise InvalidArgument("Invalid value for 'add_special_tokens': with 'messages' the chat template writes "
                              "the special tokens itself; adding them again is not supported.",
                              param="add_special_tokens")
    if request.add_generation_prompt and request.continue_final_message:
        raise InvalidArgument("Invalid value for 'continue_final_message': it cannot be combined with "
                              "add_generation_prompt; set add_generation_prompt to false.",
                              param="continue_final_message")
    return request


def parse_detokenize_request(body: bytes) -> DetokenizeRequest:
    return validate(DetokenizeRequest, parse_json_object(body))


def check_sampling(request: SamplingFields) -> None:
    """Rules between sampling fields that no single field can state."""
    if request.stream_options is not None and not request.stream:
        raise InvalidArgument("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                              param="stream_options")
    if request.seed is not None and request.random_seed is not None and request.seed != request.random_seed:
        raise InvalidArgument(f"seed ({request.seed}) and random_seed ({request.random_seed}) disagree; send one.",
                              param="random_seed")


def _check_message(where: str, message: ChatMessage) -> None:
    """What one role requires of its fields, which a single message model cannot say per role."""
    if message.tool_calls is not None and message.role != "assistant":
        raise InvalidArgument(f"Invalid value for '{where}.tool_calls': only assistant messages carry tool "
                              "calls.", param=f"{where}.tool_calls")
    if message.function_call is not None and message.role != "assistant":
        raise InvalidArgument(f"Invalid value for '{where}.function_call': only assistant messages carry a "
                              "function call.", param=f"{where}.function_call")
    if message.role == "function" and not message.name:
        raise InvalidArgument(f"Missing required parameter: '{where}.name' (a function message names its "
                              "function).", param=f"{where}.name")
    if message.tool_call_id is not None and message.role != "tool":
        raise InvalidArgument(f"Invalid value for '{where}.tool_call_id': only tool messages carry a "
                              "tool_call_id.", param=f"{where}.tool_call_id")
    if message.role == "tool" and message.tool_call_id is None:
        raise InvalidArgument(f"Missing required parameter: '{where}.tool_call_id'.", param=f"{where}.tool_call_id")
    if message.role == "assistant":
        if message.content is None and not message.tool_calls and message.function_call is None:
            raise InvalidArgument(f"Missing required parameter: '{where}.content' (an assistant message needs "
                                  "content or tool_calls).", param=f"{where}.content")
    elif message.content is None:
        raise InvalidArgument(f"Missing required parameter: '{where}.content'.", param=f"{where}.content")


def _only_with(request: ChatCompletionRequest, field: str, needs: str) -> None:
    if getattr(request, field) is not None and getattr(request, needs) is None:
        raise InvalidArgument(f"Invalid value for '{field}': '{field}' is only allowed when '{needs}' are "
                              "specified.", param=field)


def _check_functions(functions: list[FunctionDefinition], where: Callable[[int], str]) -> None:
    names: set[str] = set()
    for index, function in enumerate(functions):
        if function.name in names:
            raise InvalidArgument(f"Invalid value for '{where(index)}.name': the function '{function.name}' is "
                                  "defined twice.", param=f"{where(index)}.name")
        names.add(function.name)
        if function.parameters is not None:
            param = f"{where(index)}.parameters"
            if function.parameters.get("type", "object") != "object":
                raise InvalidArgument(f"Invalid schema for '{param}': a function's parameters are an object "
                                      "('type': 'object').", param=param)
            check_request_schema(function.parameters, param)


def _check_tools(request: ChatCompletionRequest) -> None:
    """What tools, functions and the choices between them require of each other."""
    if request.tools is not None and request.functions is not None:
        raise InvalidArgument("Send either 'tools' or the legacy 'functions', not both.", param="functions")
    _only_with(request, "tool_choice", "tools")
    _only_with(request, "parallel_tool_calls", "tools")
    _only_with(request, "function_call", "functions")
    if request.tools is not None:
        _check_functions([tool.function for tool in request.tools], lambda i: f"tools[{i}].function")
        named = request.tool_choice.function if request.tool_choice is not None else None
        if named is not None and named.name not in {tool.function.name for tool in request.tools}:
            raise InvalidArgument(f"Invalid value for 'tool_choice': there is no function named '{named.name}' "
                                  "in 'tools'.", param="tool_choice")
    if request.functions is not None:
        _check_functions(request.functions, lambda i: f"functions[{i}]")
        name = request.function_call.name if request.function_call is not None else None
        if name is not None and name not in {function.name for function in request.functions}:
            raise InvalidArgument(f"Invalid value for 'function_call': there is no function named '{name}' in "
                                  "'functions'.", param="function_call")


def _check_response_format(request: ChatCompletionRequest) -> None:
    response_format = request.response_format
    if response_format is None:
        return
    if response_format.type == "json_schema":
        if response_format.json_schema is None:
            raise InvalidArgument("Missing required parameter: 'response_format.json_schema'.",
                                  param="response_format.json_schema")
        if response_format.json_schema.schema_ is not None:
            check_request_schema(response_format.json_schema.schema_, "response_format")
    elif response_format.json_schema is not None:
        raise InvalidArgument(f"Invalid value for 'response_format.json_schema': it goes with type 'json_schema', "
                              f"not '{response_format.type}'.", param="response_format.json_schema")
