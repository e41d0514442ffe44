"""OpenAI's Responses API with the real `openai` SDK against `ingot serve`: create, stream, parse, function
tools stateless and chained, the stored responses' routes, and the Azure OpenAI paths.

SmolLM2-135M is tiny: these assert on structure and on the conversation reaching the prompt (input tokens,
input items), never on clever answers; a call is forced with tool_choice where a test needs one.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pydantic
import pytest

from tests.conftest import SMOLLM2_ALIAS, SMOLLM2_ID
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "responses-key-a", "responses-key-b"
WEATHER = {
    "type": "function", "name": "get_weather", "description": "The current weather in a city.", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False},
}


@pytest.fixture(scope="module")
def mesh(ingot_home, smollm2_dir, tmp_path_factory):
    store = tmp_path_factory.mktemp("responses") / "responses.sqlite3"
    running = Mesh(ingot_home, env={"INGOT_API_KEYS": f"{KEY_A},{KEY_B}", "INGOT_RESPONSES_DB": str(store)}).start()
    yield running
    running.stop()


def _client(mesh: Mesh, key: str = KEY_A, path: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{mesh.base_url}{path}", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(mesh) -> openai.OpenAI:
    return _client(mesh)


def test_create_answers_with_one_completed_message_and_usage(client):
    response = client.responses.create(model=SMOLLM2_ALIAS, input="Name three primary colors.",
                                       instructions="Answer briefly.", max_output_tokens=24, temperature=0)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in ("completed", "incomplete") and response.model == SMOLLM2_ID
    assert [item.type for item in response.output] == ["message"]
    message = response.output[0]
    assert message.role == "assistant" and message.content[0].type == "output_text"
    assert response.output_text == message.content[0].text and response.output_text
    usage = response.usage
    assert usage.input_tokens > 0 and 0 < usage.output_tokens <= 24
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert response.error is None and response.instructions == "Answer briefly."


def test_stream_sends_every_event_in_order_and_get_final_response_matches(client):
    with client.responses.stream(model=SMOLLM2_ALIAS, input="Say hello.", max_output_tokens=80,
                                 temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == final.output_text and final.status == "completed"
    # Greedy decoding: the streamed answer is the one a plain create gives.
    again = client.responses.create(model=SMOLLM2_ALIAS, input="Say hello.", max_output_tokens=80, temperature=0)
    assert again.output_text == final.output_text


def test_a_stream_cut_by_max_output_tokens_ends_with_response_incomplete(client):
    with client.responses.stream(model=SMOLLM2_ALIAS, input="Count to fifty.", max_output_tokens=3) as stream:
        events = list(stream)
    last = events[-1]
    assert last.type == "response.incomplete" and last.response.status == "incomplete"
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output[0].status == "incomplete" and last.response.usage.output_tokens == 3


class Color(pydantic.BaseModel):
    name: str
    hex_code: str


def test_parse_with_a_pydantic_text_format_gives_a_valid_object(client):
    parsed = client.responses.parse(model=SMOLLM2_ALIAS, input="Describe the color red as JSON.",
                                    text_format=Color, max_output_tokens=60, temperature=0)
    assert isinstance(parsed.output_parsed, Color)
    jsonschema.validate(json.loads(parsed.output_text), Color.model_json_schema())
    assert parsed.text.format.type == "json_schema"


def test_a_required_strict_function_tool_is_called_with_arguments_matching_its_schema(client):
    response = client.responses.create(model=SMOLLM2_ALIAS, input="What is the weather in Paris?",
                                       tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
                                       max_output_tokens=100)
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and all(call.name == "get_weather" for call in calls)
    for call in calls:
        assert call.call_id and call.id.startswith("fc_") and call.status == "completed"
        jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def _forced_call(client: openai.OpenAI, **extra):
    return client.responses.create(model=SMOLLM2_ALIAS, input="What is the weather in Paris?", tools=[WEATHER],
                                   tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False,
                                   max_output_tokens=100, temperature=0, **extra)


def test_a_call_chained_through_previous_response_id_answers_with_the_history_in_the_prompt(client):
    first = _forced_call(client)
    call = next(item for item in first.output if item.type == "function_call")
    output = {"type": "function_call_output", "call_id": call.call_id, "output": '{"temperature_c": 21}'}
    second = client.responses.create(model=SMOLLM2_ALIAS, previous_response_id=first.id, input=[output],
                                     tools=[WEATHER], tool_choice="none", max_output_tokens=30, temperature=0)
    assert first.status == "completed"
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    assert second.previous_response_id == first.id
    assert [item.type for item in second.output] == ["message"]
    # The stored question and call reached the prompt: it is longer than the first turn's whole prompt.
    assert second.usage.input_tokens > first.usage.input_tokens
    items = client.responses.input_items.list(second.id, order="asc")
    assert [item.type for item in items.data] == ["message", "function_call", "function_call_output"]
    assert items.data[1].call_id == call.call_id
    page = client.responses.input_items.list(second.id, limit=2)
    assert page.has_more and [item.id for item in page.data] == [item.id for item in items.data[::-1][:2]]
    rest = client.responses.input_items.list(second.id, limit=2, after=page.last_id)
    assert not rest.has_more and [item.id for item in rest.data] == [items.data[0].id]


def test_a_stateless_round_trip_sends_the_call_back_with_its_output(client):
    first = _forced_call(client, store=False)
    call = next(item for item in first.output if item.type == "function_call")
    history = [{"role": "user", "content": "What is the weather in Paris?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]
    second = client.responses.create(model=SMOLLM2_ALIAS, input=history, tools=[WEATHER], store=False,
                                     max_output_tokens=20, temperature=0)
    assert second.status in ("completed", "incomplete") and second.output
    assert second.usage.input_tokens > first.usage.input_tokens


def test_retrieve_input_items_and_delete_a_stored_response(client):
    created = client.responses.create(model=SMOLLM2_ALIAS, input="Hi.", max_output_tokens=5)
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text and fetched.store is True
    items = client.responses.input_items.list(created.id)
    assert [(item.type, item.role, item.content[0].text) for item in items.data] == [("message", "user", "Hi.")]
    assert items.data[0].id.startswith("msg_")
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_an_unknown_previous_response_id_is_a_400_previous_response_not_found(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=SMOLLM2_ALIAS, input="Hi.", previous_response_id="resp_unknown")
    error = caught.value.body
    assert caught.value.status_code == 400
    assert error["code"] == "previous_response_not_found" and error["param"] == "previous_response_id"


def test_store_false_stores_nothing(client):
    created = client.responses.create(model=SMOLLM2_ALIAS, input="Hi.", max_output_tokens=5, store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=SMOLLM2_ALIAS, input="More.", previous_response_id=created.id)


def test_another_keys_response_is_not_found_and_cannot_be_continued(mesh, client):
    created = client.responses.create(model=SMOLLM2_ALIAS, input="Hi.", max_output_tokens=5)
    other = _client(mesh, KEY_B)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(created.id)
    with pytest.raises(openai.BadRequestError) as caught:
        other.responses.create(model=SMOLLM2_ALIAS, input="More.", previous_response_id=created.id)
    assert caught.value.body["code"] == "previous_response_not_found"
    assert client.responses.retrieve(created.id).id == created.id


def test_azure_openai_client_creates_retrieves_and_lists_on_the_openai_responses_path(mesh):
    azure = openai.AzureOpenAI(azure_endpoint=mesh.base_url, api_key=KEY_A, api_version="2025-04-01-preview",
                               max_retries=0, timeout=120)
    created = azure.responses.create(model=SMOLLM2_ALIAS, input="Hi.", max_output_tokens=5)
    assert azure.responses.retrieve(created.id).id == created.id
    # The same key sent as a bearer token (the openai client) owns it too.
    assert _client(mesh).responses.retrieve(created.id).id == created.id
    assert len(azure.responses.input_items.list(created.id).data) == 1
    with azure.responses.stream(model=SMOLLM2_ALIAS, input="Hi.", max_output_tokens=5,
                                previous_response_id=created.id) as stream:
        final = list(stream)[-1].response
    assert final.usage.input_tokens > created.usage.input_tokens
    azure.responses.delete(created.id)


def test_openai_client_on_the_azure_v1_base_url_shares_the_store(mesh, client):
    azure_v1 = _client(mesh, path="/openai/v1/")
    created = azure_v1.responses.create(model=SMOLLM2_ALIAS, input="Hi.", max_output_tokens=5)
    assert client.responses.retrieve(created.id).id == created.id
    assert azure_v1.responses.retrieve(created.id).output_text == created.output_text


def test_hosted_tool_types_are_ignored_and_reasoning_items_accepted(client):
    response = client.responses.create(
        model=SMOLLM2_ALIAS, max_output_tokens=8,
        tools=[{"type": "web_search"}, {"type": "custom", "name": "apply_patch", "description": "Patch files."}],
        input=[{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
               {"role": "user", "content": [{"type": "input_text", "text": "Hi."}]}])
    assert [item.type for item in response.output] == ["message"]


def test_bad_input_is_a_400_in_openais_shape_naming_the_parameter(mesh):
    cases = [({"input": "Hi."}, "model"), ({"model": SMOLLM2_ALIAS, "input": "Hi.", "frobnicate": 1}, "frobnicate"),
             ({"model": SMOLLM2_ALIAS, "input": [{"type": "mystery"}]}, "input[0].type"),
             ({"model": SMOLLM2_ALIAS, "input": "Hi.", "tools": [WEATHER], "tool_choice": {"type": "function",
                                                                                           "name": "nope"}},
              "tool_choice"),
             ({"model": SMOLLM2_ALIAS, "input": "Hi.", "text": {"format": {
                 "type": "json_schema", "name": "x", "schema": {"type": "object", "not": {}}}}}, "text.format")]
    for body, param in cases:
        reply = httpx.post(f"{mesh.base_url}/v1/responses", json=body, headers={"api-key": KEY_A}, timeout=60)
        assert reply.status_code == 400, body
        error = reply.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_a_stream_for_an_unknown_model_fails_with_its_status_before_any_event(client):
    with pytest.raises(openai.NotFoundError) as caught:
        with client.responses.stream(model="no-such-model", input="Hi.") as stream:
            list(stream)
    assert caught.value.body["param"] == "model"
