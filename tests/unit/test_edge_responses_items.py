"""Responses input items into chat requests, and Responses parameters back from chat's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.responses.items import chat_body, chat_messages, resolve_input, responses_param
from edge.responses.schemas import ResponsesRequest
from ingot.common.errors import InvalidArgument

TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}


def _request(**fields) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", **fields})


def test_a_string_input_is_one_user_message_with_an_id():
    [item] = resolve_input(_request(input="Hi."), [])
    assert item["type"] == "message" and item["role"] == "user" and item["id"].startswith("msg_")
    assert item["content"] == [{"type": "input_text", "text": "Hi."}]


def test_history_comes_first_and_item_references_point_into_it():
    history = [{"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}],
                "status": "completed"}]
    items = resolve_input(_request(input=[{"type": "item_reference", "id": "msg_1"}]), history)
    assert [item["id"] for item in items] == ["msg_1", "msg_1"]
    with pytest.raises(InvalidArgument) as caught:
        resolve_input(_request(input=[{"type": "item_reference", "id": "msg_2"}]), history)
    assert caught.value.param == "input[0].id"


def test_reasoning_and_hosted_tool_items_are_dropped_and_a_clients_ids_are_kept():
    items = resolve_input(_request(input=[
        {"type": "reasoning", "summary": [], "encrypted_content": "x"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "message", "id": "msg_own", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
    ]), [])
    assert [(item["id"], item["content"][0]["type"]) for item in items] == [("msg_own", "output_text")]


def test_calls_join_the_assistant_turn_and_outputs_become_tool_messages():
    items = resolve_input(_request(input=[
        {"role": "user", "content": "Weather?"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "sunny"}]},
        {"type": "function_call_output", "call_id": "c2", "output": "rain"},
    ]), [])
    messages = chat_messages("Be brief.", items)
    assert [message["role"] for message in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[2]["content"] == "Checking."
    assert [call["id"] for call in messages[2]["tool_calls"]] == ["c1", "c2"]
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}


def test_a_call_with_no_assistant_turn_before_it_opens_one():
    items = resolve_input(_request(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]),
                          [])
    assert chat_messages(None, items) == [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]


@pytest.mark.parametrize(("item", "param"), [
    ({"type": "mystery"}, "input[0].type"),
    ({"role": "wizard", "content": "x"}, "input[0].role"),
    ({"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}, "input[0].content[0].type"),
    ({"type": "function_call", "call_id": "c", "name": "f"}, "input[0].arguments"),
])
def test_a_bad_item_is_a_400_naming_where_it_is(item, param):
    with pytest.raises(InvalidArgument) as caught:
        resolve_input(_request(input=[item]), [])
    assert caught.value.param == param


def test_chat_body_keeps_function_tools_ignores_hosted_ones_and_maps_the_fields():
    request = _request(input="x", tools=[{"type": "web_search"}, TOOL], tool_choice={"type": "function",
                                                                                     "name": "get_weather"},
                       max_output_tokens=9, temperature=0.5,
                       text={"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}})
    body = chat_body(request, resolve_input(request, []))
    assert body["tools"] == [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"},
                                                               "strict": True}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["max_completion_tokens"] == 9 and body["temperature"] == 0.5
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "s", "schema": {"type": "object"}}}


def test_allowed_tools_narrow_the_functions_and_hosted_tool_choices_are_refused():
    other = {**TOOL, "name": "other"}
    request = _request(input="x", tools=[TOOL, other], tool_choice={
        "type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "other"}]})
    body = chat_body(request, resolve_input(request, []))
    assert [tool["function"]["name"] for tool in body["tools"]] == ["other"] and body["tool_choice"] == "required"
    with pytest.raises(InvalidArgument):
        chat_body(_request(input="x", tools=[TOOL], tool_choice={"type": "web_search_preview"}), [])
    with pytest.raises(InvalidArgument):
        request = _request(input="x", tools=[{"type": "web_search"}], tool_choice="required")
        chat_body(request, resolve_input(request, []))


def test_a_conversation_without_a_message_is_refused():
    with pytest.raises(InvalidArgument) as caught:
        chat_body(_request(instructions="Be brief."), [])
    assert caught.value.param == "input"


def test_chat_parameters_map_back_to_the_responses_request():
    request = _request(tools=[{"type": "web_search"}, TOOL])
    assert responses_param("tools[0].function.parameters", request) == "tools[1].parameters"
    assert responses_param("response_format.json_schema", request) == "text.format"
    assert responses_param("messages[3].content", request) == "input"
    assert responses_param("max_completion_tokens", request) == "max_output_tokens"
    assert responses_param("temperature", request) == "temperature"


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=8)
_ITEM_KEYS = st.sampled_from(["type", "role", "content", "id", "call_id", "name", "arguments", "output", "text",
                              "input"])
_ITEM_VALUES = _JSON | st.sampled_from(["message", "function_call", "function_call_output", "item_reference",
                                        "user", "assistant", "input_text", "reasoning", "custom_tool_call"])


@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.dictionaries(_ITEM_KEYS, _ITEM_VALUES, max_size=5), max_size=4),
       choice=st.none() | st.sampled_from(["auto", "required", "none"]) | st.dictionaries(
           st.sampled_from(["type", "name", "mode", "tools"]), _ITEM_VALUES | st.just("allowed_tools"), max_size=3))
def test_any_input_items_and_tool_choice_are_answered_or_refused_as_bad_input(items, choice):
    try:
        request = _request(input=items, tools=[TOOL], tool_choice=choice)
        chat_body(request, resolve_input(request, []))
    except InvalidArgument:
        pass
