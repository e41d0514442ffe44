"""Tools, legacy functions and response formats into the services' terms, and calls back into OpenAI's."""

from __future__ import annotations

import json

from edge.mesh import toolcalls
from edge.openai.parsing import parse_chat_request
from ingot.inference.v1 import inference_service_pb2 as pb

PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": PARAMETERS}}
USER = {"role": "user", "content": "Weather in Oslo?"}


def request(**fields):
    return parse_chat_request(json.dumps({"model": "m", "messages": [USER], **fields}).encode())


def test_without_tools_or_format_nothing_is_constrained():
    assert toolcalls.structured(request()) == toolcalls.Structured()
    assert toolcalls.structured(request(response_format={"type": "text"})).constraint is None


def test_response_formats_become_json_schema_constraints():
    assert json.loads(toolcalls.structured(request(response_format={"type": "json_object"})).constraint.json_schema) == {
        "type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    structured = toolcalls.structured(request(response_format={"type": "json_schema",
                                                               "json_schema": {"name": "r", "schema": schema}}))
    assert json.loads(structured.constraint.json_schema) == schema
    assert structured.constraint_param == "response_format"


def test_tools_default_to_auto_with_parallel_calls():
    structured = toolcalls.structured(request(tools=[TOOL]))
    assert structured.tools.choice == pb.TOOL_CHOICE_AUTO and structured.tools.parallel_calls
    assert json.loads(structured.tools.functions[0].parameters_json) == PARAMETERS
    assert json.loads(structured.tools_json) == [TOOL]
    assert structured.constraint_param == "tools" and not structured.legacy


def test_each_tool_choice_maps_to_its_own():
    for choice, expected in (("none", pb.TOOL_CHOICE_NONE), ("auto", pb.TOOL_CHOICE_AUTO),
                             ("required", pb.TOOL_CHOICE_REQUIRED)):
        assert toolcalls.structured(request(tools=[TOOL], tool_choice=choice)).tools.choice == expected
    named = toolcalls.structured(request(tools=[TOOL], parallel_tool_calls=False, tool_choice={
        "type": "function", "function": {"name": "get_weather"}})).tools
    assert (named.choice, named.function_name, named.parallel_calls) == (pb.TOOL_CHOICE_FUNCTION, "get_weather", False)


def test_legacy_functions_allow_one_call_and_answer_with_function_call():
    structured = toolcalls.structured(request(functions=[TOOL["function"]], function_call={"name": "get_weather"}))
    assert structured.legacy and structured.constraint_param == "functions"
    assert (structured.tools.choice, structured.tools.function_name) == (pb.TOOL_CHOICE_FUNCTION, "get_weather")
    assert not structured.tools.parallel_calls
    assert toolcalls.structured(request(functions=[TOOL["function"]], function_call="none")).tools.choice == (
        pb.TOOL_CHOICE_NONE)


def test_a_function_without_parameters_sends_none():
    structured = toolcalls.structured(request(tools=[{"type": "function", "function": {"name": "now"}}]))
    assert structured.tools.functions[0].parameters_json == ""


def test_legacy_history_becomes_tool_calls_and_tool_results():
    chat = request(messages=[USER, {"role": "assistant", "function_call": {"name": "get_weather",
                                                                           "arguments": '{"city": "Oslo"}'}},
                             {"role": "function", "name": "get_weather", "content": "-3 C"}])
    _, assistant, result = toolcalls.chat_messages(chat.messages)
    assert assistant.tool_calls[0].id == "call_1" and assistant.tool_calls[0].function.name == "get_weather"
    assert (result.role, result.tool_call_id, result.name, result.content) == ("tool", "call_1", "get_weather", "-3 C")


def deltas():
    return [pb.ToolCallDelta(index=0, id="call_a", name="get_weather"), pb.ToolCallDelta(index=0, arguments='{"ci'),
            pb.ToolCallDelta(index=0, arguments='ty": "Oslo"}'), pb.ToolCallDelta(index=1, id="call_b", name="add")]


def test_calls_assemble_from_their_deltas():
    calls = toolcalls.Calls()
    calls.add(deltas())
    assert [(c.id, c.function.name, c.function.arguments) for c in calls.tool_calls()] == [
        ("call_a", "get_weather", '{"city": "Oslo"}'), ("call_b", "add", "")]
    assert calls.function_call() is None and calls.finish_reason("tool_calls") == "tool_calls"
    legacy = toolcalls.Calls(legacy=True)
    legacy.add(deltas()[:3])
    assert legacy.tool_calls() is None
    assert legacy.function_call().arguments == '{"city": "Oslo"}'
    assert legacy.finish_reason("tool_calls") == "function_call"


def test_a_chunk_carries_one_entry_per_call_and_the_first_names_it():
    fields = toolcalls.delta_fields(deltas(), legacy=False)
    assert [entry.model_dump() for entry in fields["tool_calls"]] == [
        {"index": 0, "id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "add", "arguments": ""}}]
    later = toolcalls.delta_fields([pb.ToolCallDelta(index=0, arguments="}")], legacy=False)
    assert later["tool_calls"][0].model_dump() == {"index": 0, "function": {"arguments": "}"}}
    assert toolcalls.delta_fields(deltas()[:2], legacy=True)["function_call"].model_dump() == {
        "name": "get_weather", "arguments": '{"ci'}
