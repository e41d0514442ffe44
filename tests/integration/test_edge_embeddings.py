"""The edge's embeddings routes (OpenAI and Azure) over the real registry and the real embeddings service,
both in-process on port 0, with aiohttp's test client."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from edge.app import create_app
from edge.shared.settings import EdgeSettings
from ingot.common.grpcserver import ServiceHost
from services.embeddings import server as embeddings_server
from services.embeddings.settings import EmbeddingsSettings
from tests.conftest import MINILM_ALIAS, MINILM_ID, SMOLLM2_ALIAS
from tests.integration.helpers import serve_registry

API = "?api-version=2024-05-01-preview"
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


@pytest.fixture()
async def client(ingot_home, minilm_dir, smollm2_dir):
    registry, registry_address = await serve_registry(ingot_home / "models")
    host = ServiceHost("embeddings", [embeddings_server.SERVICE_NAME])
    _, cleanup = embeddings_server.build(host.server, EmbeddingsSettings(registry_address=registry_address))
    embeddings_address = await host.start("127.0.0.1:0")
    await host.set_serving(True)
    # Nothing here calls the tokenizer or inference services; their addresses only have to be valid.
    settings = EdgeSettings(registry_address=registry_address, embeddings_address=embeddings_address,
                            tokenizer_address=registry_address, inference_address=registry_address)
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client
    await host.stop(0)
    await cleanup()
    await registry.stop(0)


async def post(client, path, body, status=200, headers=None):
    response = await client.post(path, json=body, headers=headers)
    payload = await response.json()
    assert response.status == status, payload
    return payload


def floats(payload) -> np.ndarray:
    return np.array([item["embedding"] for item in payload["data"]], dtype=np.float32)


async def test_openai_response_has_openai_shape_and_usage(client):
    payload = await post(client, "/v1/embeddings", {"model": MINILM_ALIAS, "input": ["hello", "a longer sentence"]})
    assert payload["object"] == "list" and payload["model"] == MINILM_ID
    assert [(d["object"], d["index"]) for d in payload["data"]] == [("embedding", 0), ("embedding", 1)]
    assert len(payload["data"][0]["embedding"]) == 384
    usage = payload["usage"]
    assert set(usage) == {"prompt_tokens", "total_tokens"} and usage["prompt_tokens"] == usage["total_tokens"] > 4


async def test_base64_decodes_to_the_float_vectors(client):
    body = {"model": MINILM_ALIAS, "input": "hello world"}
    plain = floats(await post(client, "/v1/embeddings", body))
    encoded = (await post(client, "/v1/embeddings", {**body, "encoding_format": "base64"}))["data"][0]["embedding"]
    assert np.array_equal(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), plain[0])


async def test_token_arrays_are_inputs_too(client):
    one = await post(client, "/v1/embeddings", {"model": MINILM_ALIAS, "input": [7592, 2088]})
    many = await post(client, "/v1/embeddings", {"model": MINILM_ALIAS, "input": [[7592, 2088], [7592]]})
    assert len(one["data"]) == 1 and len(many["data"]) == 2
    assert np.abs(floats(one)[0] - floats(many)[0]).max() < 1e-5


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "x"}, "model"),
    ({"model": MINILM_ALIAS}, "input"),
    ({"model": MINILM_ALIAS, "input": ""}, "input"),
    ({"model": MINILM_ALIAS, "input": []}, "input"),
    ({"model": MINILM_ALIAS, "input": ["ok", 3]}, "input[1]"),
    ({"model": MINILM_ALIAS, "input": [[1, 2], [3, "x"]]}, "input[1][1]"),
    ({"model": MINILM_ALIAS, "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": MINILM_ALIAS, "input": "x", "dimensions": 0}, "dimensions"),
    ({"model": MINILM_ALIAS, "input": "x", "dimensions": 128}, "dimensions"),
    ({"model": MINILM_ALIAS, "input": "x", "input_type": "query"}, "input_type"),
    ({"model": MINILM_ALIAS, "input": "x", "temperature": 1}, "temperature"),
    ({"model": MINILM_ALIAS, "input": "word " * 400, "truncate": False}, "input"),
    ({"model": SMOLLM2_ALIAS, "input": "x"}, "model"),
])
async def test_bad_openai_requests_are_400s_naming_the_parameter(client, body, param):
    error = (await post(client, "/v1/embeddings", body, status=400))["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


async def test_a_chat_model_is_refused_by_its_name(client):
    error = (await post(client, "/v1/embeddings", {"model": SMOLLM2_ALIAS, "input": "x"}, status=400))["error"]
    assert "SmolLM2-135M-Instruct-generic-cpu:1" in error["message"]


async def test_unknown_model_is_a_404(client):
    error = (await post(client, "/v1/embeddings", {"model": "nope", "input": "x"}, status=404))["error"]
    assert error["param"] == "model"


async def test_instruction_changes_the_vector_and_user_does_not(client):
    body = {"model": MINILM_ALIAS, "input": "How do I cook pasta?"}
    plain = floats(await post(client, "/v1/embeddings", body))
    tagged = floats(await post(client, "/v1/embeddings", {**body, "user": "someone"}))
    instructed = floats(await post(client, "/v1/embeddings", {**body, "instruction": "Represent this query:"}))
    assert np.array_equal(plain, tagged)
    assert float(plain[0] @ instructed[0]) < 0.99


async def test_azure_openai_routes_take_the_deployment_from_the_path(client):
    payload = await post(client, f"/openai/deployments/{MINILM_ALIAS}/embeddings{API}", {"input": "hi"})
    assert payload["model"] == MINILM_ID
    payload = await post(client, "/openai/v1/embeddings", {"model": MINILM_ALIAS, "input": "hi"})
    assert payload["model"] == MINILM_ID


@pytest.mark.parametrize("prefix", ["", "/models"])
async def test_azure_embeddings_answer_with_an_id_bare_and_under_models(client, prefix):
    payload = await post(client, f"{prefix}/embeddings{API}", {"model": MINILM_ALIAS, "input": ["a", "b"]})
    assert payload["id"] and payload["object"] == "list" and len(payload["data"]) == 2


@pytest.mark.parametrize("fmt", ["int8", "uint8", "binary", "ubinary"])
async def test_azure_quantised_encodings_follow_the_float_vector(client, fmt):
    body = {"model": MINILM_ALIAS, "input": "hello world"}
    vector = floats(await post(client, f"/embeddings{API}", body))[0]
    got = np.array((await post(client, f"/embeddings{API}", {**body, "encoding_format": fmt}))["data"][0]["embedding"])
    if fmt in ("int8", "uint8"):
        expected = np.clip(np.rint(vector * 127), -127, 127) + (128 if fmt == "uint8" else 0)
        assert got.shape == (384,) and np.array_equal(got, expected)
    else:
        bits = np.unpackbits((got + (128 if fmt == "binary" else 0)).astype(np.uint8))
        assert got.shape == (48,) and np.array_equal(bits.astype(bool), vector > 0)


async def test_azure_deployment_may_come_from_the_header(client):
    payload = await post(client, f"/embeddings{API}", {"input": "hi"},
                         headers={"azureml-model-deployment": MINILM_ALIAS})
    assert payload["model"] == MINILM_ID
    error = (await post(client, f"/embeddings{API}", {"input": "hi"}, status=400))["error"]
    assert error["param"] == "model" and error["status"] == 400


async def test_azure_routes_need_an_api_version(client):
    error = (await post(client, "/embeddings", {"model": MINILM_ALIAS, "input": "hi"}, status=400))["error"]
    assert error["param"] == "api-version"
    error = (await post(client, "/embeddings?api-version=latest", {"model": MINILM_ALIAS, "input": "hi"},
                        status=400))["error"]
    assert error["param"] == "api-version"


async def test_what_the_model_cannot_do_is_azures_422(client):
    payload = await post(client, f"/embeddings{API}", {"model": MINILM_ALIAS, "input": "hi", "dimensions": 64},
                         status=422)
    assert payload["code"] == "parameter_not_supported"
    assert payload["message"] == "One of the parameters contain invalid values."
    assert payload["detail"]["loc"] == ["body", "dimensions"] and payload["detail"]["input"] == 64
    assert "384" in payload["detail"]["msg"]


async def test_extra_parameters_are_refused_dropped_or_passed_through(client):
    body = {"model": MINILM_ALIAS, "input": "word " * 400, "truncate": False}
    refused = await post(client, f"/embeddings{API}", body, status=422)
    assert refused["code"] == "extra_parameters_not_allowed" and refused["detail"]["loc"] == ["body", "truncate"]
    await post(client, f"/embeddings{API}", body, headers={"extra-parameters": "drop"})
    error = (await post(client, f"/embeddings{API}", body, status=400,
                        headers={"extra-parameters": "pass-through"}))["error"]
    assert error["code"] == "context_length_exceeded"
    payload = await post(client, f"/embeddings{API}", {**body, "truncate": True, "safe_prompt": True}, status=422,
                         headers={"extra-parameters": "pass-through"})
    assert payload["detail"]["loc"] == ["body", "safe_prompt"]


async def test_image_embeddings_are_a_clear_422_never_a_vector(client):
    for body in ({"model": MINILM_ALIAS, "input": [{"image": PNG, "text": "a cat"}]}, {"input": [{"image": PNG}]}):
        payload = await post(client, f"/images/embeddings{API}", body, status=422)
        assert payload["code"] == "image_embeddings_unavailable"
        assert "No image embedding model is deployed" in payload["message"]
        assert "data" not in payload


async def test_image_inputs_must_be_data_urls(client):
    error = (await post(client, f"/images/embeddings{API}", {"input": [{"image": "http://x/cat.png"}]},
                        status=400))["error"]
    assert error["param"] == "input[0].image"


async def test_info_names_the_model_type_of_a_deployment(client):
    response = await client.get(f"/info{API}", headers={"azureml-model-deployment": MINILM_ALIAS})
    assert await response.json() == {"model_name": MINILM_ID, "model_type": "embeddings",
                                     "model_provider_name": "sentence-transformers"}
    response = await client.get(f"/models/info{API}&model={SMOLLM2_ALIAS}")
    assert (await response.json())["model_type"] == "chat_completion"
    response = await client.get(f"/info{API}&model=nope")
    assert response.status == 404 and (await response.json())["error"]["status"] == 404


async def test_wrong_method_on_an_azure_route_is_a_405_in_azure_shape(client):
    response = await client.get(f"/embeddings{API}")
    assert response.status == 405 and (await response.json())["error"]["status"] == 405


async def test_ready_lists_the_embeddings_service(client):
    body = await (await client.get("/ready")).json()
    assert body["services"]["embeddings"]["status"] == "SERVING"


async def test_an_edge_without_an_embeddings_service_answers_503(ingot_home):
    settings = EdgeSettings(registry_address="127.0.0.1:1", tokenizer_address="127.0.0.1:1",
                            inference_address="127.0.0.1:1")
    async with TestClient(TestServer(create_app(settings))) as bare:
        response = await bare.post("/v1/embeddings", json={"model": MINILM_ALIAS, "input": "x"})
        assert response.status == 503 and "embeddings" in (await response.json())["error"]["message"]
