"""The tool-call grammar's shape and the parser that reads calls back out of streamed text."""

from __future__ import annotations

import json

import pytest

from ingot.common import toolformat
from ingot.common.errors import InvalidArgument
from ingot.inference.v1 import inference_service_pb2 as pb
from services.inference import toolcalls
from services.inference.toolcalls import ToolCallParser

WEATHER = toolformat.call_text("get_weather", {"city": "Paris", "unit": "celsius"})
ADD = toolformat.call_text("add", {"a": 17, "b": {"nested": "} </tool_call> {"}})


def parse(chunks: list[str]) -> tuple[str, list[dict]]:
    """Feeds the chunks in order; returns the prose and the calls assembled as OpenAI's SDK assembles them."""
    parser = ToolCallParser()
    content, calls = "", {}
    for parsed in [*(parser.feed(chunk) for chunk in chunks), parser.flush()]:
        content += parsed.content
        for delta in parsed.deltas:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id
            call["name"] += delta.name
            call["arguments"] += delta.arguments
    return content, [calls[i] for i in sorted(calls)]


def every_split(text: str) -> list[list[str]]:
    return [[text[:i], text[i:j], text[j:]] for i in range(len(text) + 1) for j in range(i, len(text) + 1, 7)]


def test_a_call_is_read_as_its_name_and_arguments_with_no_prose():
    content, calls = parse([WEATHER])
    assert content == ""
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("get_weather", {"city": "Paris", "unit": "celsius"})]
    assert calls[0]["id"].startswith("call_")


def test_however_the_text_is_split_the_prose_and_calls_come_out_the_same():
    text = "Let me check <b>that</b>.\n" + WEATHER + toolformat.CALL_SEPARATOR + ADD
    expected = ("Let me check <b>that</b>.\n",
                [("get_weather", '{"city": "Paris", "unit": "celsius"}'),
                 ("add", '{"a": 17, "b": {"nested": "} </tool_call> {"}}')])
    for chunks in every_split(text):
        content, calls = parse(chunks)
        assert (content, [(c["name"], c["arguments"]) for c in calls]) == expected, chunks


def test_text_that_only_looks_like_the_start_of_a_marker_is_released_as_prose():
    content, calls = parse(["a <tool", "_cal", "l> is not a call", " <tool"])
    assert content == "a <tool_call> is not a call <tool"
    assert calls == []


def test_a_marker_never_reaches_the_prose_while_it_may_still_complete():
    parser = ToolCallParser()
    assert parser.feed("Sure. <tool_").content == "Sure. "
    assert parser.feed("call>\n").content == ""


def test_a_call_cut_short_keeps_its_name_and_the_arguments_so_far():
    content, calls = parse([WEATHER[:60]])
    assert content == ""
    assert calls[0]["name"] == "get_weather"
    assert '{"city": "Paris", "unit": "celsius"}'.startswith(calls[0]["arguments"])


def test_the_parser_counts_only_finished_calls():
    parser = ToolCallParser()
    parser.feed(WEATHER + toolformat.CALL_SEPARATOR + ADD[:30])
    assert parser.calls == 1


def tools(*names: str, choice=pb.TOOL_CHOICE_AUTO, parallel=True, function_name="") -> pb.Tools:
    return pb.Tools(functions=[pb.FunctionDefinition(name=n, parameters_json='{"type": "object"}') for n in names],
                    choice=choice, parallel_calls=parallel, function_name=function_name)


def test_each_choice_has_its_own_start_rule():
    assert toolcalls.grammar(tools("a", choice=pb.TOOL_CHOICE_NONE)).startswith("start: TEXT\n")
    assert toolcalls.grammar(tools("a", choice=pb.TOOL_CHOICE_REQUIRED)).startswith(
        "start: call (CALL_SEPARATOR call)*\n")
    assert toolcalls.grammar(tools("a", choice=pb.TOOL_CHOICE_REQUIRED, parallel=False)).startswith("start: call\n")
    assert toolcalls.grammar(tools("a")).startswith("start: TEXT | LEAD body CALL_CLOSE (CALL_SEPARATOR call)*\n")
    assert toolcalls.grammar(tools("a"), answer_schema={"type": "object"}).startswith(
        "start: answer | call (CALL_SEPARATOR call)*\n")


def test_a_named_function_is_the_only_one_in_the_grammar():
    grammar = toolcalls.grammar(tools("a", "b", choice=pb.TOOL_CHOICE_FUNCTION, function_name="b"))
    assert grammar.startswith("start: call\n")
    body = json.loads(grammar.split("body: %json ", 1)[1].splitlines()[0])
    assert body["properties"]["name"] == {"const": "b"}


def test_parameters_move_under_defs_with_their_references_rebased():
    parameters = {"$defs": {"P": {"type": "integer"}}, "type": "object",
                  "properties": {"p": {"$ref": "#/$defs/P"}, "me": {"$ref": "#"}, "c": {"const": {"$ref": "#/x"}}}}
    function = pb.FunctionDefinition(name="f", parameters_json=json.dumps(parameters))
    schema = toolcalls.call_schema([function, function])
    moved = schema["$defs"]["function_1"]
    assert moved["properties"]["p"] == {"$ref": "#/$defs/function_1/$defs/P"}
    assert moved["properties"]["me"] == {"$ref": "#/$defs/function_1"}
    assert moved["properties"]["c"] == {"const": {"$ref": "#/x"}}
    assert schema["anyOf"][1]["properties"]["arguments"] == {"$ref": "#/$defs/function_1"}
    assert schema["x-guidance"] == toolformat.JSON_LAYOUT


@pytest.mark.parametrize("bad, param", [
    (tools("a b"), "tools.functions[0].name"),
    (tools("a", "a"), "tools.functions[1].name"),
    (tools("a", choice=pb.TOOL_CHOICE_FUNCTION, function_name="b"), "tools.function_name"),
    (pb.Tools(functions=[pb.FunctionDefinition(name="a", parameters_json="{")]), "tools.functions[0].parameters_json"),
    (pb.Tools(functions=[pb.FunctionDefinition(name="a", parameters_json="[]")]), "tools.functions[0].parameters_json"),
])
def test_tools_the_grammar_cannot_be_built_from_are_invalid_arguments(bad, param):
    with pytest.raises(InvalidArgument) as caught:
        toolcalls.guidance(pb.GenerateRequest(tools=bad), None)
    assert caught.value.param == param


def test_only_a_json_schema_constraint_combines_with_tools():
    with pytest.raises(InvalidArgument) as caught:
        toolcalls.guidance(pb.GenerateRequest(tools=tools("a")), ("regex", "a+"))
    assert caught.value.param == "constraint"
    kind, grammar = toolcalls.guidance(pb.GenerateRequest(tools=tools("a")), ("json_schema", '{"type": "object"}'))
    assert kind == "lark_grammar" and "answer: %json" in grammar


@pytest.mark.parametrize("parameters, expected", [
    ("", {"type": "object", "properties": {}, "additionalProperties": False}),
    ("true", {"type": "object"}),
    ('{"properties": {"a": {"type": "integer"}}}', {"type": "object", "properties": {"a": {"type": "integer"}}}),
    ('{"type": "object", "required": []}', {"type": "object", "required": []}),
])
def test_arguments_are_always_an_object(parameters, expected):
    schema = toolcalls.call_schema([pb.FunctionDefinition(name="f", parameters_json=parameters)])
    assert schema["$defs"]["function_0"] == expected
