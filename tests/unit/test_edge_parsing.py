"""Chat request validation: every bad input is a 400 that names the parameter the client must fix."""

from __future__ import annotations

import json

import pytest

from edge.openai.parsing import BAD_JSON, param_path, parse_chat_request
from ingot.common.errors import InvalidArgument

USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def body(**fields: object) -> dict[str, object]:
    return {"model": "m", "messages": [USER], **fields}


def rejects(raw: bytes | dict) -> InvalidArgument:
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    with pytest.raises(InvalidArgument) as caught:
        parse_chat_request(data)
    assert caught.value.http_status == 400
    return caught.value


@pytest.mark.parametrize("raw", [b"", b"{", b"{'model': 1}", b"\xff\xfe{}", b'{"model": "m", "temperature": NaN}'])
def test_unparseable_body(raw: bytes) -> None:
    error = rejects(raw)
    assert (error.message, error.param) == (BAD_JSON, None)


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"null", b"3"])
def test_body_must_be_an_object(raw: bytes) -> None:
    assert rejects(raw).param is None


@pytest.mark.parametrize(("fields", "param"), [
    ({"model": None}, "model"),
    ({"model": ""}, "model"),
    ({"model": 7}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [USER, "hi"]}, "messages[1]"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "function", "content": "hi"}]}, "messages[0].name"),
    ({"messages": [{"role": "user", "content": "hi", "function_call": {"name": "f", "arguments": "{}"}}]},
     "messages[0].function_call"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
    ({"messages": [USER, {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[1].content[0].type"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "hi", "audio": {"id": "a"}}]}, "messages[0].audio"),
    ({"messages": [{"role": "assistant"}]}, "messages[0].content"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": "hi", "tool_call_id": "c"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]}, "messages[0].tool_calls"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": "0.5"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"max_tokens": True}, "max_tokens"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_tokens": 2**40}, "max_tokens"),
    ({"max_completion_tokens": -3}, "max_completion_tokens"),
    ({"max_tokens": 5, "max_completion_tokens": 6}, "max_completion_tokens"),
    ({"stream": "yes"}, "stream"),
    ({"stream": True, "stream_options": {"include_usage": True, "chunk_size": 3}}, "stream_options.chunk_size"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"n": 17}, "n"),
    ({"n": 0}, "n"),
    ({"logit_bias": {"x": 1}}, "logit_bias"),
    ({"logit_bias": {"1": 101}}, "logit_bias"),
    ({"tools": []}, "tools"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": "get weather"}}]}, "tools[0].function.name"),
    ({"tools": [TOOL, TOOL]}, "tools[1].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}}}]},
     "tools[0].function.parameters"),
    ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [TOOL], "tool_choice": {"type": "function"}}, "tool_choice"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"tools": [TOOL], "functions": [TOOL["function"]]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"functions": [TOOL["function"]], "function_call": {"name": "other"}}, "function_call"),
    ({"functions": [{"name": "f", "parameters": {"not": {}}}]}, "functions[0].parameters"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"response_format": {"type": "json_object", "json_schema": {"name": "a"}}}, "response_format.json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}}, "response_format.json_schema.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"format": "uri"}}}},
     "response_format"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": [""]}, "stop"),
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"top_k": 0}, "top_k"),
    ({"seed": 1, "random_seed": 2}, "random_seed"),
    ({"seed": "1"}, "seed"),
])
def test_bad_parameter_is_named(fields: dict[str, object], param: str) -> None:
    assert rejects(body(**fields)).param == param


def test_missing_fields_say_so() -> None:
    assert rejects({"messages": [USER]}).message == "Missing required parameter: 'model'."
    assert rejects({"model": "m"}).message == "Missing required parameter: 'messages'."


def test_unsupported_parameter_message() -> None:
    error = rejects(body(service_tier="flex"))
    assert error.message == "Unsupported parameter: 'service_tier' is not supported by this server yet."


def test_a_single_stop_string_is_a_list_of_one() -> None:
    assert parse_chat_request(json.dumps(body(stop="END")).encode()).stop == ["END"]


def test_accepts_every_supported_parameter() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    request = parse_chat_request(json.dumps(body(
        messages=[{"role": "system", "content": "s"},
                  {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                   "name": "ann"},
                  {"role": "assistant", "content": None, "tool_calls": [call]},
                  {"role": "tool", "tool_call_id": "c1", "content": "r"}],
        max_tokens=9, max_completion_tokens=9, temperature=0, top_p=1, stream=True,
        stream_options={"include_usage": True}, n=1)).encode())
    assert request.messages[1].text() == "a\nb"
    assert request.messages[2].text() is None
    assert request.token_limit == 9
    assert request.include_usage
    assert request.temperature == 0.0


def test_null_stands_for_absent() -> None:
    # What SDKs send for options their user left unset: nothing is asked for, so nothing is refused.
    request = parse_chat_request(json.dumps(body(stop=None, logit_bias=None, tools=None, stream=None,
                                                 messages=[{"role": "user", "content": "hi",
                                                            "refusal": None}])).encode())
    assert request.stream is None


def test_param_path() -> None:
    assert param_path(("messages", 0, "content", 2, "text")) == "messages[0].content[2].text"
    assert param_path(("temperature",)) == "temperature"


def test_accepts_tools_and_structured_output() -> None:
    request = parse_chat_request(json.dumps(body(
        tools=[TOOL, {"type": "function", "function": {"name": "g", "description": "d", "strict": True}}],
        tool_choice={"type": "function", "function": {"name": "g"}}, parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "strict": True,
                                                                "schema": {"type": "object"}}})).encode())
    assert request.tool_choice.function.name == "g"
    assert request.response_format.json_schema.schema_ == {"type": "object"}
    for choice in ("none", "auto", "required"):
        assert parse_chat_request(json.dumps(body(tools=[TOOL], tool_choice=choice)).encode()).tool_choice.type == choice


def test_accepts_the_legacy_functions_api() -> None:
    request = parse_chat_request(json.dumps(body(
        messages=[USER, {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
                  {"role": "function", "name": "f", "content": "42"}],
        functions=[TOOL["function"]], function_call={"name": "f"})).encode())
    assert request.function_call.name == "f"
    assert parse_chat_request(json.dumps(body(functions=[TOOL["function"]], function_call="none")).encode()
                              ).function_call.mode == "none"


def test_an_unenforceable_schema_keyword_is_named_in_the_message() -> None:
    error = rejects(body(response_format={"type": "json_schema", "json_schema": {
        "name": "r", "schema": {"type": "object", "properties": {"a": {"type": "string", "contentEncoding": "base64"}}}}}))
    assert "'contentEncoding'" in error.message and "/properties/a" in error.message


def test_json_nested_beyond_reason_is_a_400_not_a_crash() -> None:
    schema = '{"items": ' * 5000 + "{}" + "}" * 5000
    raw = ('{"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", '
           '"json_schema": {"name": "a", "schema": ' + schema + "}}}").encode()
    assert rejects(raw).message == BAD_JSON


def test_a_lone_surrogate_in_a_body_is_a_400_not_a_failure_mid_response() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "a \\ud800 b"}]}'
    with pytest.raises(InvalidArgument) as caught:
        parse_chat_request(body)
    assert "surrogate" in caught.value.message
    # A proper pair is one character, and fine.
    assert parse_chat_request(b'{"model": "m", "messages": [{"role": "user", "content": "\\ud83d\\udc09"}]}')
