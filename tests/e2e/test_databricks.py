"""Databricks' Foundation Model API end to end: `ingot serve` with an API key as the Databricks token, driven
by databricks-sdk (WorkspaceClient's serving_endpoints and get_open_ai_client()) and mlflow's Databricks
deployments client, configured only by DATABRICKS_HOST and DATABRICKS_TOKEN.

Both clients read DATABRICKS_* variables and ~/.databrickscfg, and mlflow reads MLFLOW_* ones: every test
here runs with those cleared, HOME pointing at an empty folder, mlflow's telemetry off and its retries off
(a test must see the status the server sent).
"""

from __future__ import annotations

import json
import os
import warnings

import httpx
import numpy as np
import openai
import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, ResourceDoesNotExist, Unauthenticated
from databricks.sdk.service.serving import ChatMessage, ChatMessageRole, QueryEndpointResponseObject
from mlflow.deployments import get_deploy_client

from tests.conftest import MINILM_ALIAS, MINILM_ID, SMOLLM2_ALIAS, SMOLLM2_ID
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e

TOKEN = "dapi-ingot-test"
LIMITED = "smol-limited"
DEPLOYMENTS = {"deployments": [{"name": LIMITED, "model": SMOLLM2_ALIAS, "requests_per_minute": 1}]}
HI = [ChatMessage(role=ChatMessageRole.USER, content="Hi! Name a fruit.")]
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"
QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


@pytest.fixture(autouse=True)
def _models_are_built(smollm2_dir, minilm_dir):
    """Fails with `run make setup` rather than with a 404 when a model was never built."""


@pytest.fixture(scope="module")
def mesh(ingot_home, tmp_path_factory):
    folder = tmp_path_factory.mktemp("databricks")
    (folder / "deployments.json").write_text(json.dumps(DEPLOYMENTS))
    running = Mesh(ingot_home, args=["--deployments", str(folder / "deployments.json")],
                   env={"INGOT_API_KEYS": TOKEN}).start()
    yield running
    running.stop()


@pytest.fixture(scope="module", autouse=True)
def databricks_env(mesh, tmp_path_factory):
    """The environment a user moving a workload to ingot has: DATABRICKS_HOST and a token, nothing else."""
    home = tmp_path_factory.mktemp("databricks-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("DATABRICKS_", "MLFLOW_")):
                patch.delenv(name)
        patch.setenv("HOME", str(home))
        patch.setenv("DATABRICKS_HOST", mesh.base_url)
        patch.setenv("DATABRICKS_TOKEN", TOKEN)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("DO_NOT_TRACK", "true")
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        yield


@pytest.fixture(scope="module")
def workspace(databricks_env) -> WorkspaceClient:
    return WorkspaceClient()


@pytest.fixture(scope="module")
def deploy(databricks_env):
    return get_deploy_client("databricks")


@pytest.fixture(scope="module")
def openai_client(workspace) -> openai.OpenAI:
    with warnings.catch_warnings():
        # It points to databricks-openai instead; existing code still calls it, so ingot serves it.
        warnings.filterwarnings("ignore", "get_open_ai_client", DeprecationWarning)
        client = workspace.serving_endpoints.get_open_ai_client()
    return client.with_options(max_retries=0)


def tokenize(mesh: Mesh, **body) -> dict:
    response = httpx.post(f"{mesh.base_url}/tokenize", json={"model": SMOLLM2_ALIAS, **body},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    response.raise_for_status()
    return response.json()


def test_every_chat_and_embeddings_model_and_deployment_is_a_ready_endpoint(workspace, deploy):
    listed = {endpoint.name: endpoint for endpoint in workspace.serving_endpoints.list()}
    assert listed[SMOLLM2_ALIAS].task == "llm/v1/chat"
    assert listed[MINILM_ALIAS].task == "llm/v1/embeddings"
    assert listed[LIMITED].task == "llm/v1/chat"
    assert all(endpoint.state.ready.value == "READY" for endpoint in listed.values())
    detailed = workspace.serving_endpoints.get(MINILM_ALIAS)
    assert detailed.name == MINILM_ALIAS and detailed.task == "llm/v1/embeddings"
    assert detailed.config.served_entities[0].foundation_model.name == MINILM_ID
    # mlflow asks for the list with a trailing slash.
    assert {endpoint["name"] for endpoint in deploy.list_endpoints()} == set(listed)
    assert deploy.get_endpoint(SMOLLM2_ALIAS)["task"] == "llm/v1/chat"


def test_sdk_chat_query_answers_from_the_model(workspace):
    answer = workspace.serving_endpoints.query(SMOLLM2_ALIAS, messages=HI, max_tokens=12, temperature=0.0)
    assert answer.object == QueryEndpointResponseObject.CHAT_COMPLETION
    assert answer.model == SMOLLM2_ID
    assert answer.choices[0].message.content.strip()
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert 0 < answer.usage.completion_tokens <= 12


def test_sdk_fields_are_accepted_and_extra_params_reach_the_model(workspace):
    greedy = workspace.serving_endpoints.query(SMOLLM2_ALIAS, messages=HI, max_tokens=16, temperature=0.0)
    # top_k 1 makes a hot temperature greedy: only a top_k that reached the sampler gives the same text.
    sampled = workspace.serving_endpoints.query(
        SMOLLM2_ALIAS, messages=HI, max_tokens=16, temperature=1.5, client_request_id="req-42",
        usage_context={"team": "search"}, extra_params={"top_k": "1"})
    assert sampled.choices[0].message.content == greedy.choices[0].message.content


def test_completions_on_a_chat_endpoint_use_its_template_unless_use_raw_prompt(workspace, deploy, mesh):
    templated = workspace.serving_endpoints.query(SMOLLM2_ALIAS, prompt=COUNTING, max_tokens=8, temperature=0.0)
    assert templated.object == QueryEndpointResponseObject.TEXT_COMPLETION
    chat_tokens = tokenize(mesh, messages=[{"role": "user", "content": COUNTING}])["count"]
    assert templated.usage.prompt_tokens == chat_tokens
    raw = deploy.predict(endpoint=SMOLLM2_ALIAS, inputs={"prompt": COUNTING, "use_raw_prompt": True, "echo": True,
                                                         "max_tokens": 4, "temperature": 0})
    assert raw["usage"]["prompt_tokens"] == tokenize(mesh, prompt=COUNTING)["count"] < chat_tokens
    text = raw["choices"][0]["text"]
    assert text.startswith(COUNTING) and " 9" in text[len(COUNTING):]


def test_embeddings_with_and_without_an_instruction(workspace, deploy, openai_client):
    plain = workspace.serving_endpoints.query(MINILM_ALIAS, input=["How do I bake bread?", "Hi"])
    assert plain.object == QueryEndpointResponseObject.LIST
    vectors = np.array([item.embedding for item in plain.data])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    alone = deploy.predict(endpoint=MINILM_ALIAS, inputs={"input": ["How do I bake bread?"]})
    assert np.abs(np.array(alone["data"][0]["embedding"]) - vectors[0]).max() < 1e-5
    instructed = deploy.predict(endpoint=MINILM_ALIAS,
                                inputs={"input": ["How do I bake bread?"], "instruction": QUERY_INSTRUCTION})
    # The instruction is read with the input: its tokens count, and the vector moves.
    assert instructed["usage"]["prompt_tokens"] > alone["usage"]["prompt_tokens"]
    with_instruction = np.array(instructed["data"][0]["embedding"])
    assert np.abs(with_instruction - vectors[0]).max() > 1e-3
    # The OpenAI-compatible route (which the openai client asks for in base64) gives the same vector.
    same = openai_client.embeddings.create(model=MINILM_ALIAS, input="How do I bake bread?")
    assert np.abs(np.array(same.data[0].embedding) - vectors[0]).max() < 1e-5


def test_the_references_chat_parameters_act_through_invocations(deploy):
    fruit = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}, "required": ["name"],
             "additionalProperties": False}
    answer = deploy.predict(endpoint=SMOLLM2_ALIAS, inputs={
        "messages": [{"role": "user", "content": "Name a fruit as JSON."}], "max_tokens": 40, "temperature": 0,
        "n": 2, "stop": ["\n\n"], "logprobs": True, "top_logprobs": 2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "fruit", "schema": fruit}}})
    assert [choice["index"] for choice in answer["choices"]] == [0, 1]
    for choice in answer["choices"]:
        assert set(json.loads(choice["message"]["content"])) == {"name"}
        assert all(len(entry["top_logprobs"]) <= 2 for entry in choice["logprobs"]["content"])
    weather = {"type": "function", "function": {"name": "get_weather", "description": "The weather of a city",
                                                "parameters": {"type": "object", "required": ["city"],
                                                               "properties": {"city": {"type": "string"}}}}}
    called = deploy.predict(endpoint=SMOLLM2_ALIAS, inputs={
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}], "max_tokens": 60,
        "temperature": 0, "tools": [weather], "tool_choice": "required", "parallel_tool_calls": False})
    [call] = called["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and "city" in json.loads(call["function"]["arguments"])


def test_mlflow_predict_stream_is_the_answer_in_pieces(deploy):
    inputs = {"messages": [{"role": "user", "content": "Hi! Name a fruit."}], "max_tokens": 12, "temperature": 0}
    whole = deploy.predict(endpoint=SMOLLM2_ALIAS, inputs=inputs)
    chunks = list(deploy.predict_stream(endpoint=SMOLLM2_ALIAS, inputs=inputs))
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


def test_mlflow_streams_completions_too(deploy):
    inputs = {"prompt": COUNTING, "use_raw_prompt": True, "max_tokens": 6, "temperature": 0}
    whole = deploy.predict(endpoint=SMOLLM2_ALIAS, inputs=inputs)
    chunks = list(deploy.predict_stream(endpoint=SMOLLM2_ALIAS, inputs=inputs))
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == whole["choices"][0]["text"]


def test_the_sdks_openai_client_chats_streams_and_completes(openai_client):
    messages = [{"role": "user", "content": "Hi! Name a fruit."}]
    answer = openai_client.chat.completions.create(model=SMOLLM2_ALIAS, messages=messages, max_tokens=10,
                                                   temperature=0)
    assert answer.choices[0].message.content
    streamed = openai_client.chat.completions.create(model=SMOLLM2_ALIAS, messages=messages, max_tokens=10,
                                                     temperature=0, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == \
        answer.choices[0].message.content
    completion = openai_client.completions.create(model=SMOLLM2_ALIAS, prompt=COUNTING, max_tokens=4,
                                                  temperature=0, extra_body={"use_raw_prompt": True})
    assert completion.choices[0].text.startswith(" 9")


def test_an_unknown_endpoint_is_resource_does_not_exist(workspace, deploy, openai_client, mesh):
    with pytest.raises(ResourceDoesNotExist, match="Endpoint with name 'no-such-model' does not exist"):
        workspace.serving_endpoints.get("no-such-model")
    with pytest.raises(ResourceDoesNotExist):
        workspace.serving_endpoints.query("no-such-model", messages=HI)
    with pytest.raises(requests.HTTPError) as caught:
        deploy.predict(endpoint="no-such-model", inputs={"messages": [{"role": "user", "content": "Hi"}]})
    assert caught.value.response.status_code == 404
    assert caught.value.response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    # A path under the prefix that no route serves answers in the same shape.
    response = httpx.get(f"{mesh.base_url}/serving-endpoints/x/y/z", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404 and set(response.json()) == {"error_code", "message"}


def test_a_bad_parameter_is_invalid_parameter_value(workspace, deploy):
    with pytest.raises(InvalidParameterValue, match="temperature"):
        workspace.serving_endpoints.query(SMOLLM2_ALIAS, messages=HI, temperature=3.0)
    with pytest.raises(InvalidParameterValue, match="extra_params"):
        workspace.serving_endpoints.query(SMOLLM2_ALIAS, messages=HI, extra_params={"top_k": "none"})
    with pytest.raises(InvalidParameterValue, match="frobnicate"):
        workspace.serving_endpoints.query(SMOLLM2_ALIAS, messages=HI, extra_params={"frobnicate": "1"})
    with pytest.raises(requests.HTTPError) as caught:
        deploy.predict(endpoint=MINILM_ALIAS, inputs={"messages": [{"role": "user", "content": "Hi"}]})
    assert caught.value.response.status_code == 400
    assert caught.value.response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_missing_or_wrong_token_is_401_and_host_metadata_needs_none(mesh):
    with pytest.raises(Unauthenticated):
        WorkspaceClient(host=mesh.base_url, token="dapi-wrong").serving_endpoints.list()
    response = httpx.post(f"{mesh.base_url}/serving-endpoints/{SMOLLM2_ALIAS}/invocations",
                          json={"messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"
    metadata = httpx.get(f"{mesh.base_url}/.well-known/databricks-config")
    assert metadata.status_code == 200 and metadata.json() == {}


def test_a_rate_limited_deployment_answers_429_with_retry_after(mesh):
    # Raw HTTP: the SDK would honour Retry-After and retry for up to five minutes.
    url = f"{mesh.base_url}/serving-endpoints/{LIMITED}/invocations"
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses = [httpx.post(url, json=body, headers=headers, timeout=60) for _ in range(2)]
    assert [response.status_code for response in statuses] == [200, 429]
    assert statuses[1].json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert int(statuses[1].headers["Retry-After"]) >= 1
