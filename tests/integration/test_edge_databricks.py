"""The Databricks routes against fake services over real gRPC: what reaches the services, and the error body
and headers each failure gets."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from edge.app import create_app

from ingot.common.errors import FailedPrecondition, ResourceExhausted, Unavailable
from tests.integration.edge_fakes import CHAT_ALIAS, CHAT_ID, EMBED_ALIAS, Mesh, Script, sse_data, sse_json

INVOKE = f"/serving-endpoints/{CHAT_ALIAS}/invocations"
HI = [{"role": "user", "content": "Say hello"}]


async def test_both_list_paths_describe_every_model_as_a_ready_endpoint(client: TestClient) -> None:
    for path in ("/api/2.0/serving-endpoints", "/api/2.0/serving-endpoints/"):
        resp = await client.get(path)
        assert resp.status == 200
        endpoints = {endpoint["name"]: endpoint for endpoint in (await resp.json())["endpoints"]}
        assert {name: endpoint["task"] for name, endpoint in endpoints.items()} == {
            CHAT_ALIAS: "llm/v1/chat", EMBED_ALIAS: "llm/v1/embeddings"}
        assert endpoints[CHAT_ALIAS]["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
        assert endpoints[CHAT_ALIAS]["config"]["served_entities"][0]["foundation_model"]["name"] == CHAT_ID


async def test_an_unknown_endpoint_is_404_resource_does_not_exist(client: TestClient) -> None:
    for resp in (await client.get("/api/2.0/serving-endpoints/nope"),
                 await client.post("/serving-endpoints/nope/invocations", json={"messages": HI})):
        assert resp.status == 404
        assert await resp.json() == {"error_code": "RESOURCE_DOES_NOT_EXIST",
                                     "message": "Endpoint with name 'nope' does not exist."}


async def test_a_prompt_goes_through_the_chat_template_unless_use_raw_prompt(client: TestClient, mesh: Mesh) -> None:
    answer = await (await client.post(INVOKE, json={"prompt": "Say hello", "echo": True})).json()
    [templated] = mesh.tokenizer.requests
    assert [(m.role, m.content) for m in templated.messages] == [("user", "Say hello")]
    # What the model was given, as Databricks echoes a templated prompt.
    assert answer["choices"][0]["text"] == "<user>Say hello" + "Hello, world"
    assert (await client.post(INVOKE, json={"prompt": "Say hello", "use_raw_prompt": True})).status == 200
    [encoded] = mesh.tokenizer.encoded
    assert encoded.text == "Say hello" and len(mesh.tokenizer.requests) == 1


async def test_the_openai_compatible_completions_route_templates_too(client: TestClient, mesh: Mesh) -> None:
    resp = await client.post("/serving-endpoints/completions", json={"model": CHAT_ALIAS, "prompt": "Say hello"})
    assert resp.status == 200
    assert len(mesh.tokenizer.requests) == 1 and not mesh.tokenizer.encoded


async def test_sdk_fields_are_accepted_and_extra_params_become_parameters(client: TestClient, mesh: Mesh) -> None:
    resp = await client.post(INVOKE, json={"messages": HI, "client_request_id": "r-1", "usage_context": {"a": "b"},
                                           "extra_params": {"top_k": "3", "stop": "[\"x\"]"}})
    assert resp.status == 200, await resp.text()
    sampling = mesh.inference.requests[0].sampling
    assert sampling.top_k == 3 and list(sampling.stop) == ["x"]


async def test_bad_bodies_are_invalid_parameter_value(client: TestClient) -> None:
    cases = [
        ({"messages": HI, "temperature": "hot"}, "'temperature'"),
        ({"messages": HI, "prompt": "x"}, "'prompt'"),
        ({"input": "x"}, "llm/v1/chat"),
        ({"dataframe_records": [{"a": 1}]}, "foundation model"),
        ({"messages": HI, "extra_params": {"top_k": "0"}}, "extra_params"),
        ({"messages": HI, "extra_params": {"n": "2"}, "n": 2}, "extra_params.n"),
        ({"messages": HI, "model": "other"}, "'model'"),
        ({"messages": HI, "surprise": 1}, "'surprise'"),
    ]
    for body, mentioned in cases:
        resp = await client.post(INVOKE, json=body)
        answer = await resp.json()
        assert resp.status == 400, body
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE" and mentioned in answer["message"], (body, answer)
    resp = await client.post(INVOKE, data=b"{not json")
    assert resp.status == 400 and (await resp.json())["error_code"] == "BAD_REQUEST"


async def test_429_and_503_carry_retry_after(client: TestClient, mesh: Mesh) -> None:
    for error, code in ((ResourceExhausted("The queue is full."), "REQUEST_LIMIT_EXCEEDED"),
                        (Unavailable("The inference service is restarting."), "TEMPORARILY_UNAVAILABLE")):
        mesh.inference.script = Script(fail_first=error)
        resp = await client.post(INVOKE, json={"messages": HI})
        assert resp.status == error.http_status
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error_code"] == code


async def test_a_stream_that_fails_midway_ends_with_a_databricks_error_event(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_after=FailedPrecondition("The model was unloaded."))
    resp = await client.post(INVOKE, json={"messages": HI, "stream": True})
    raw = await resp.text()
    assert all(line.startswith("data: ") for line in raw.splitlines() if line)
    assert sse_data(raw)[-1] != "[DONE]"
    assert sse_json(raw)[-1] == {"error_code": "BAD_REQUEST", "message": "The model was unloaded."}


async def test_unknown_paths_and_methods_answer_in_databricks_shape(client: TestClient) -> None:
    resp = await client.get("/serving-endpoints/a/b/c")
    assert resp.status == 404 and set(await resp.json()) == {"error_code", "message"}
    resp = await client.get(INVOKE)
    assert resp.status == 405 and (await resp.json())["error_code"] == "BAD_REQUEST"
    # The OpenAI routes keep OpenAI's shape.
    resp = await client.get("/v1/nothing-here")
    assert "error" in await resp.json()


async def test_host_metadata_is_an_empty_object_even_with_keys_configured(mesh: Mesh) -> None:
    async with TestClient(TestServer(create_app(mesh.settings(api_keys="k1")))) as keyed:
        resp = await keyed.get("/.well-known/databricks-config")
        assert resp.status == 200 and await resp.json() == {}
        resp = await keyed.get("/api/2.0/serving-endpoints")
        assert resp.status == 401 and (await resp.json())["error_code"] == "UNAUTHENTICATED"
        resp = await keyed.get("/api/2.0/serving-endpoints", headers={"Authorization": "Bearer k1"})
        assert resp.status == 200
