"""The agent tools that speak only Responses, against `ingot serve`: a recorded Codex request body and an
OpenAI Agents SDK Runner with one function tool (its tracing export off: nothing leaves the host)."""

from __future__ import annotations

import json
from pathlib import Path

import agents
import httpx
import jsonschema
import openai
import pytest

from tests.conftest import SMOLLM2_ALIAS
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e

# Codex sends no max_output_tokens; the operator's cap keeps the tiny model's answer short.
TOKEN_CAP = 48
CODEX_BODY = Path(__file__).parents[1] / "data" / "codex_responses_request.json"


@pytest.fixture(scope="module")
def mesh(ingot_home, smollm2_dir, tmp_path_factory):
    store = tmp_path_factory.mktemp("responses") / "responses.sqlite3"
    running = Mesh(ingot_home, env={"INGOT_RESPONSES_DB": str(store), "INGOT_MAX_TOKENS_CAP": str(TOKEN_CAP)}).start()
    yield running
    running.stop()


def _codex_body() -> dict:
    body = json.loads(CODEX_BODY.read_text())
    body["model"] = SMOLLM2_ALIAS
    return body


def _sse(mesh: Mesh, body: dict) -> list[dict]:
    with httpx.stream("POST", f"{mesh.base_url}/v1/responses", json=body, timeout=120,
                      headers={"Accept": "text/event-stream"}) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[len("data: "):]) for line in reply.iter_lines() if line.startswith("data: ")]


def test_a_recorded_codex_request_streams_a_complete_answer_with_its_history_in_the_prompt(mesh):
    body = _codex_body()
    events = _sse(mesh, body)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events[:3]] == ["response.created", "response.in_progress",
                                                       "response.output_item.added"]
    final = events[-1]
    assert final["type"] in ("response.completed", "response.incomplete")
    response = final["response"]
    assert response["store"] is False and response["prompt_cache_key"] == body["prompt_cache_key"]
    functions = {tool["name"]: tool for tool in body["tools"] if tool["type"] == "function"}
    for item in response["output"]:
        assert item["type"] in ("message", "function_call")
        if item["type"] == "function_call" and item["status"] == "completed":
            # Only the function tools can be called; web_search, apply_patch and the namespace are ignored.
            jsonschema.validate(json.loads(item["arguments"]), functions[item["name"]]["parameters"])
    done = [event["item"] for event in events if event["type"] == "response.output_item.done"]
    assert done == response["output"]
    # store: false keeps nothing, as Codex expects: it sends the whole history every turn.
    assert httpx.get(f"{mesh.base_url}/v1/responses/{response['id']}", timeout=30).status_code == 404
    # The whole history reached the prompt: the last question alone is far shorter.
    short = {**body, "input": body["input"][-1:], "stream": False}
    alone = httpx.post(f"{mesh.base_url}/v1/responses", json=short, timeout=120).json()
    assert response["usage"]["input_tokens"] > alone["usage"]["input_tokens"] + 100


@agents.function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"It is sunny in {city}."


async def test_an_agents_sdk_runner_calls_its_function_tool_and_continues_from_the_stored_response(mesh):
    agents.set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    model = agents.OpenAIResponsesModel(model=SMOLLM2_ALIAS, openai_client=client)
    agent = agents.Agent(name="weather", instructions="Answer weather questions with the tool.", model=model,
                         tools=[get_weather], tool_use_behavior="stop_on_first_tool",
                         model_settings=agents.ModelSettings(tool_choice="get_weather", max_tokens=40,
                                                             temperature=0, parallel_tool_calls=False))
    result = await agents.Runner.run(agent, "What is the weather in Paris?")
    assert result.final_output.startswith("It is sunny in ")
    calls = [item for item in result.new_items if item.type == "tool_call_item"]
    assert len(calls) == 1 and calls[0].raw_item.name == "get_weather"
    first = await client.responses.retrieve(result.last_response_id)
    # The Agents SDK sends only the new items after previous_response_id: the stored turn supplies the rest.
    chat = agents.Agent(name="chat", instructions="Answer briefly.", model=model,
                        model_settings=agents.ModelSettings(max_tokens=20, temperature=0))
    follow_up = await agents.Runner.run(chat, "Thanks. Which city was it?",
                                        previous_response_id=result.last_response_id)
    assert isinstance(follow_up.final_output, str)
    second = await client.responses.retrieve(follow_up.last_response_id)
    assert second.previous_response_id == first.id
    fresh = await agents.Runner.run(chat, "Thanks. Which city was it?")
    baseline = await client.responses.retrieve(fresh.last_response_id)
    assert second.usage.input_tokens > baseline.usage.input_tokens
    items = await client.responses.input_items.list(second.id, order="asc")
    assert [item.type for item in items.data][:2] == ["message", "function_call"]
    await client.close()
