"""Tools and response formats through the edge, against fake services over real gRPC: what reaches the
tokenizer and inference services, and how parsed calls come back in OpenAI's shapes."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient

from ingot.common.errors import InvalidArgument
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb
from tests.integration.edge_fakes import Mesh, Script, chat_body, sse_json

URL = "/v1/chat/completions"
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}}


def calls_script(prose: str = "") -> Script:
    """Prose (maybe none), then two calls whose arguments arrive in fragments."""
    return Script(pieces=[prose, "", "", ""], finish=common_pb2.FINISH_REASON_TOOL_CALLS, tool_calls={
        1: [pb.ToolCallDelta(index=0, id="call_a", name="get_weather"), pb.ToolCallDelta(index=0, arguments='{"ci')],
        2: [pb.ToolCallDelta(index=0, arguments='ty": "Oslo"}')],
        3: [pb.ToolCallDelta(index=1, id="call_b", name="get_weather", arguments='{"city": "Rome"}')],
    })


EXPECTED_CALLS = [
    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
    {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
]


async def test_tools_reach_the_tokenizer_and_inference_services(client: TestClient, mesh: Mesh) -> None:
    body = chat_body(tools=[TOOL], tool_choice="required", parallel_tool_calls=False)
    assert (await client.post(URL, json=body)).status == 200
    assert json.loads(mesh.tokenizer.requests[0].tools_json) == [TOOL]
    tools = mesh.inference.requests[0].tools
    assert (tools.choice, tools.parallel_calls) == (pb.TOOL_CHOICE_REQUIRED, False)
    assert [(f.name, json.loads(f.parameters_json)) for f in tools.functions] == [("get_weather", PARAMETERS)]


async def test_a_json_schema_response_format_reaches_inference_as_a_constraint(client: TestClient,
                                                                                mesh: Mesh) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = chat_body(response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}})
    assert (await client.post(URL, json=body)).status == 200
    assert json.loads(mesh.inference.requests[0].constraint.json_schema) == schema
    assert not mesh.inference.requests[0].tools.functions


async def test_calls_come_back_as_tool_calls_with_null_content(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = calls_script()
    answer = await (await client.post(URL, json=chat_body(tools=[TOOL]))).json()
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": None, "tool_calls": EXPECTED_CALLS}
    assert answer["choices"][0]["finish_reason"] == "tool_calls"


async def test_prose_before_calls_stays_the_content(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = calls_script("Let me check.")
    answer = await (await client.post(URL, json=chat_body(tools=[TOOL]))).json()
    assert answer["choices"][0]["message"]["content"] == "Let me check."
    assert answer["choices"][0]["message"]["tool_calls"] == EXPECTED_CALLS


async def test_streamed_calls_arrive_as_indexed_deltas_after_the_role(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = calls_script()
    chunks = sse_json(await (await client.post(URL, json=chat_body(tools=[TOOL], stream=True))).text())
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas == [
        {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"ci'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_legacy_functions_answer_with_function_call(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = calls_script()
    mesh.inference.script.tool_calls.pop(3)
    body = chat_body(functions=[TOOL["function"]], function_call={"name": "get_weather"})
    answer = await (await client.post(URL, json=body)).json()
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": None, "function_call": {
        "name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    assert answer["choices"][0]["finish_reason"] == "function_call"
    tools = mesh.inference.requests[0].tools
    assert (tools.choice, tools.function_name, tools.parallel_calls) == (pb.TOOL_CHOICE_FUNCTION, "get_weather", False)

    chunks = sse_json(await (await client.post(URL, json={**body, "stream": True})).text())
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "function_call": {"name": "get_weather", "arguments": '{"ci'}}
    assert deltas[1] == {"function_call": {"arguments": 'ty": "Oslo"}'}}
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


async def test_a_grammar_the_engine_refuses_is_a_400_on_the_parameter_it_came_from(client: TestClient,
                                                                                   mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_first=InvalidArgument("oneOf constraints are not supported",
                                                              param="constraint"))
    for stream in (False, True):
        resp = await client.post(URL, json=chat_body(tools=[TOOL], stream=stream))
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "tools"
        resp = await client.post(URL, json=chat_body(stream=stream, response_format={"type": "json_object"}))
        assert (await resp.json())["error"]["param"] == "response_format"


async def test_an_unenforceable_schema_is_refused_before_any_call(client: TestClient, mesh: Mesh) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}}}
    resp = await client.post(URL, json=chat_body(tools=[tool]))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["param"] == "tools[0].function.parameters"
    assert "'uniqueItems'" in error["message"] and "/properties/tags" in error["message"]
    assert mesh.tokenizer.requests == [] and mesh.inference.requests == []
