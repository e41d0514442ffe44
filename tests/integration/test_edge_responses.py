"""The Responses routes in process over fake services: failures before and after the stream opens, calls
parsed by the engine as function_call items, and what is (not) stored when an answer fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edge.app import create_app
from ingot.common.errors import Internal, InvalidArgument
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as inference_pb2
from tests.integration.edge_fakes import CHAT_ALIAS, Mesh, Script, sse_data, sse_json

URL = "/v1/responses"


@pytest.fixture
async def client(mesh: Mesh, tmp_path: Path) -> AsyncIterator[TestClient]:
    app = create_app(mesh.settings(responses_db=str(tmp_path / "responses.sqlite3")))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _body(**extra: object) -> dict[str, object]:
    return {"model": CHAT_ALIAS, "input": "Say hello", **extra}


async def test_a_non_streamed_answer_is_stored_and_retrievable(client: TestClient) -> None:
    resp = await client.post(URL, json=_body())
    answer = await resp.json()
    assert resp.status == 200 and answer["output"][0]["content"][0]["text"] == "Hello, world"
    stored = await client.get(f"{URL}/{answer['id']}")
    assert stored.status == 200 and (await stored.json()) == answer


async def test_a_stream_failing_before_its_first_token_keeps_its_status_and_names_the_input(
        client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_first=InvalidArgument("The prompt is too long.", param="messages"))
    resp = await client.post(URL, json=_body(stream=True))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["param"] == "input" and error["message"] == "The prompt is too long."


async def test_a_grammar_the_engine_refuses_is_blamed_on_text_format(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_first=InvalidArgument("bad grammar", param="constraint"))
    resp = await client.post(URL, json=_body(text={"format": {"type": "json_object"}}))
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "text.format"


async def test_a_stream_failing_midway_ends_with_response_failed_and_stores_nothing(
        client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_after=Internal("The engine failed."))
    resp = await client.post(URL, json=_body(stream=True))
    assert resp.status == 200
    assert "[DONE]" not in sse_data(await resp.text())
    events = sse_json(await resp.text())
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    last = events[-1]
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"]["message"] == "The engine failed."
    assert (await client.get(f"{URL}/{last['response']['id']}")).status == 404


async def test_the_engines_parsed_calls_become_function_call_items(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(
        pieces=["", "", ""], finish=common_pb2.FINISH_REASON_TOOL_CALLS,
        tool_calls={0: [inference_pb2.ToolCallDelta(index=0, id="call_1", name="get_weather", arguments='{"city": ')],
                    1: [inference_pb2.ToolCallDelta(index=0, arguments='"Oslo"}')],
                    2: [inference_pb2.ToolCallDelta(index=1, id="call_2", name="get_weather", arguments="{}")]})
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    resp = await client.post(URL, json=_body(tools=[tool], stream=True))
    events = sse_json(await resp.text())
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert [(item["type"], item["call_id"], item["arguments"]) for item in final["output"]] == [
        ("function_call", "call_1", '{"city": "Oslo"}'), ("function_call", "call_2", "{}")]
    deltas = [event["delta"] for event in events if event["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"city": ', '"Oslo"}', "{}"]
