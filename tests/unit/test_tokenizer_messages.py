"""Protobuf messages become the dicts chat templates expect, and bad ones are refused with the right param."""

from __future__ import annotations

import pytest

from ingot.common.errors import InvalidArgument
from ingot.common.v1 import common_pb2
from services.tokenizer.messages import parse_tools, template_messages


def call(arguments: str) -> common_pb2.ToolCall:
    return common_pb2.ToolCall(id="call_1", type="function",
                               function=common_pb2.FunctionCall(name="weather", arguments=arguments))


def test_a_plain_message_has_role_and_content_only():
    assert template_messages([common_pb2.ChatMessage(role="user", content="Hi")]) == [
        {"role": "user", "content": "Hi"}
    ]


def test_an_empty_content_stays_an_empty_string_and_an_absent_one_is_none():
    chat = template_messages([common_pb2.ChatMessage(role="user", content=""),
                              common_pb2.ChatMessage(role="assistant", tool_calls=[call("{}")])])
    assert chat[0]["content"] == ""
    assert chat[1]["content"] is None


def test_tool_call_arguments_that_are_a_json_object_become_a_dict():
    [message] = template_messages([common_pb2.ChatMessage(role="assistant", tool_calls=[call('{"city": "Paris"}')])])
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}
    ]


@pytest.mark.parametrize("arguments", ['{"city": "Par', '["Paris"]', '"Paris"', ""])
def test_tool_call_arguments_that_are_not_a_json_object_stay_text(arguments):
    [message] = template_messages([common_pb2.ChatMessage(role="assistant", tool_calls=[call(arguments)])])
    assert message["tool_calls"][0]["function"]["arguments"] == arguments


def test_a_tool_call_without_a_type_is_a_function_call():
    tool_call = common_pb2.ToolCall(id="c", function=common_pb2.FunctionCall(name="f", arguments="{}"))
    [message] = template_messages([common_pb2.ChatMessage(role="assistant", tool_calls=[tool_call])])
    assert message["tool_calls"][0]["type"] == "function"


def test_name_and_tool_call_id_appear_only_when_set():
    chat = template_messages([
        common_pb2.ChatMessage(role="user", content="x", name="alice"),
        common_pb2.ChatMessage(role="tool", content="21", tool_call_id="call_1"),
    ])
    assert chat == [{"role": "user", "content": "x", "name": "alice"},
                    {"role": "tool", "content": "21", "tool_call_id": "call_1"}]


@pytest.mark.parametrize("role", ["developer", "User", "function", ""])
def test_an_unknown_role_is_refused_naming_its_index(role):
    with pytest.raises(InvalidArgument) as caught:
        template_messages([common_pb2.ChatMessage(role="user", content="a"),
                           common_pb2.ChatMessage(role=role, content="b")])
    assert caught.value.param == "messages[1].role"


def test_no_messages_is_refused():
    with pytest.raises(InvalidArgument) as caught:
        template_messages([])
    assert caught.value.param == "messages"


@pytest.mark.parametrize("text", ["", "  ", "[]"])
def test_no_tools_is_none(text):
    assert parse_tools(text) is None


def test_tools_are_parsed_from_json():
    assert parse_tools('[{"type": "function", "function": {"name": "f"}}]') == [
        {"type": "function", "function": {"name": "f"}}
    ]


@pytest.mark.parametrize("text", ["[{", '{"type": "function"}', "[1, 2]"])
def test_tools_that_are_not_an_array_of_objects_are_refused(text):
    with pytest.raises(InvalidArgument) as caught:
        parse_tools(text)
    assert caught.value.param == "tools"
