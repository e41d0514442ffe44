"""Foundry Local's management routes on the edge, over a real registry and a real HTTP catalog host.

The download stream is read the three ways Foundry Local's SDKs read it (Python by lines, JavaScript by
chunks, C# from the last "{"), so a format change that breaks any of them fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import openai
import pytest
from aiohttp.test_utils import TestClient, TestServer

from edge.app import create_app
from edge.shared.settings import EdgeSettings
from ingot.common.grpcserver import ServiceHost
from ingot.inference.v1 import inference_service_pb2 as inference_pb2
from ingot.inference.v1 import inference_service_pb2_grpc as inference_grpc
from tests.catalogserver import SMALL_FILES, CatalogServer, ServedModel
from tests.integration.registry_harness import Registry

NAME = "SmolLM2-Files-generic-cpu:1"
FOLDER = "SmolLM2-Files-generic-cpu-1"
ALIAS = "smollm2-files"
PROGRESS = re.compile(r"^Total \d{1,3}\.\d{2}% Downloading \S+$")
# The fields foundry-local-sdk 0.x's FoundryListResponseModel requires, with their types.
FOUNDRY_LIST_FIELDS = {
    "name": str, "displayName": str, "modelType": str, "providerType": str, "uri": str, "version": str,
    "promptTemplate": dict, "publisher": str, "task": str, "runtime": dict, "fileSizeMb": int,
    "modelSettings": dict, "alias": str, "supportsToolCalling": bool, "license": str, "licenseDescription": str,
    "parentModelUri": str, "maxOutputTokens": int, "minFLVersion": str,
}
SDK_EXECUTION_PROVIDERS = {"CPUExecutionProvider", "WebGpuExecutionProvider", "CUDAExecutionProvider",
                           "QNNExecutionProvider"}


class FakeInference(inference_grpc.InferenceServiceServicer):
    """Only what deleting asks of the inference service: what is loaded, and unloading it."""

    def __init__(self) -> None:
        self.loaded: set[str] = set()
        self.unloaded: list[str] = []

    async def ListLoadedModels(self, request, context):
        return inference_pb2.ListLoadedModelsResponse(
            models=[inference_pb2.LoadedModel(id=name) for name in sorted(self.loaded)])

    async def UnloadModel(self, request, context):
        self.unloaded.append(request.model)
        self.loaded.discard(request.model)
        return inference_pb2.UnloadModelResponse()


@pytest.fixture
def catalog_host(smollm2_dir: Path):
    server = CatalogServer([ServedModel(NAME, ALIAS, smollm2_dir, SMALL_FILES)]).start()
    yield server
    server.stop()


@pytest.fixture
async def registry(tmp_path: Path, catalog_host: CatalogServer):
    running = await Registry(tmp_path / "home", catalog_host.catalog_url).start()
    yield running
    await running.stop()


@pytest.fixture
async def inference():
    fake = FakeInference()
    host = ServiceHost("inference", [inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name])
    inference_grpc.add_InferenceServiceServicer_to_server(fake, host.server)
    fake.address = await host.start("127.0.0.1:0")
    yield fake
    await host.stop(0)


@pytest.fixture
async def client(registry, inference):
    settings = EdgeSettings(tokenizer_address=registry.address, registry_address=registry.address,
                            inference_address=inference.address)
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


def sdk_download_body(name: str = NAME) -> dict:
    """What foundry-local-sdk's Python download_model posts."""
    return {"model": {"Name": name, "Uri": "azureml://registries/ingot-tests/models/x/versions/1",
                      "Publisher": "IngotTests", "ProviderType": "AzureFoundryLocal",
                      "PromptTemplate": {"prompt": "{Content}"}},
            "token": None, "IgnorePipeReport": True}


def python_sdk_result(body: str) -> tuple[list[float], dict]:
    """foundry-local-sdk (Python): per line, the JSON starts at the first line beginning with "{"."""
    final, percents = "", []
    for line in body.splitlines():
        if final or line.startswith("{"):
            final += line
            continue
        if match := re.search(r"(\d+(?:\.\d+)?)%", line):
            percents.append(min(float(match.group(1)), 100.0))
    assert final.endswith("}"), body
    return percents, json.loads(final)


def js_sdk_result(chunks: list[bytes]) -> dict:
    """foundry-local-sdk (JavaScript): per chunk read, the JSON starts at the first chunk beginning with "{"."""
    final = ""
    for chunk in chunks:
        text = chunk.decode()
        if final or text.startswith("{"):
            final += text
    assert final, f"no chunk starts with '{{': {chunks[-3:]}"
    return json.loads(final)


def csharp_sdk_result(body: str) -> tuple[bool, str | None]:
    """Foundry Local's C# SDK: everything after the last "{" is the result; both properties must be there."""
    document = json.loads(body[body.rindex("{"):])
    return document["success"], document["errorMessage"]


async def read_download(client: TestClient, body: dict) -> tuple[int, str, list[bytes]]:
    response = await client.post("/openai/download", json=body)
    chunks = [chunk async for chunk in response.content.iter_any()]
    return response.status, b"".join(chunks).decode(), chunks


async def test_a_download_streams_lines_every_sdk_parses_and_ends_with_a_flat_success(client):
    status, body, chunks = await read_download(client, sdk_download_body())
    assert status == 200
    lines = body.splitlines()
    assert lines[-2:] == ["[DONE] All Completed!", '{"success": true, "errorMessage": null}']
    assert lines[:-2] and all(PROGRESS.match(line) for line in lines[:-2]), lines
    percents, result = python_sdk_result(body)
    assert result == {"success": True, "errorMessage": None}
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert js_sdk_result(chunks) == {"success": True, "errorMessage": None}
    assert csharp_sdk_result(body) == (True, None)
    models = await (await client.get("/openai/models")).json()
    assert models == [NAME]


async def test_a_download_failing_mid_stream_ends_with_a_flat_error_every_sdk_reads(client, catalog_host):
    catalog_host.missing.add((FOLDER, "model.onnx"))
    status, body, chunks = await read_download(client, sdk_download_body())
    assert status == 200
    assert "[DONE]" not in body
    _, result = python_sdk_result(body)
    assert result["success"] is False and "model.onnx" in result["errorMessage"]
    assert js_sdk_result(chunks) == result
    assert csharp_sdk_result(body) == (False, result["errorMessage"])
    assert await (await client.get("/openai/models")).json() == []


async def test_an_unknown_model_is_a_404_before_streaming_in_both_error_shapes(client):
    response = await client.post("/openai/download", json=sdk_download_body("no-such-model:1"))
    assert response.status == 404
    body = await response.json()
    assert body["success"] is False and "no-such-model:1" in body["errorMessage"]
    assert (body["error"]["param"], body["error"]["code"]) == ("model", "model_not_found")


@pytest.mark.parametrize(("body", "param"), [
    ({"model": {"Name": NAME}, "color": "red"}, "color"),
    ({}, "model"),
    ({"model": {}}, "model.Name"),
    ({"model": {"Name": 7}}, "model.Name"),
    ({"model": {"Name": NAME, "ProviderType": "HuggingFace"}}, "model.ProviderType"),
    ({"model": {"Name": NAME, "Extra": 1}}, "model.Extra"),
    ({"model": {"Name": NAME}, "bufferSize": "big"}, "bufferSize"),
    ({"model": {"Name": NAME}, "customDirPath": "relative"}, "customDirPath"),
])
async def test_a_bad_download_body_is_a_400_naming_the_parameter(client, body, param):
    response = await client.post("/openai/download", json=body)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param


async def test_keys_of_the_download_body_are_matched_without_regard_to_case(client):
    status, body, _ = await read_download(client, {"Model": {"name": ALIAS}, "ignorepipereport": True})
    assert status == 200 and csharp_sdk_result(body) == (True, None)


async def test_foundry_list_has_every_field_the_python_sdk_requires(client):
    response = await client.get("/foundry/list")
    assert response.status == 200
    entries = await response.json()
    assert isinstance(entries, list) and [e["name"] for e in entries] == [NAME]
    for entry in entries:
        for key, kind in FOUNDRY_LIST_FIELDS.items():
            assert isinstance(entry[key], kind), (key, entry[key])
        assert entry["runtime"]["deviceType"] in {"CPU", "GPU", "NPU"}
        assert entry["runtime"]["executionProvider"] in SDK_EXECUTION_PROVIDERS
    assert entries[0]["alias"] == ALIAS and entries[0]["version"] == "1"


async def test_status_is_camel_case_with_the_real_model_dir(client, registry):
    body = await (await client.get("/openai/status")).json()
    assert set(body) == {"endpoints", "modelDirPath", "pipeName"}
    assert body["modelDirPath"] == str(registry.settings.models_root)
    assert body["endpoints"] == [str(client.make_url("")).rstrip("/")]


async def test_delete_refuses_a_loaded_model_unless_forced(client, inference):
    await read_download(client, sdk_download_body())
    inference.loaded.add(NAME)
    refused = await client.delete(f"/openai/models/{NAME}")
    assert refused.status == 400
    assert (await refused.json())["error"]["code"] == "model_in_use"
    assert await (await client.get("/openai/models")).json() == [NAME]
    forced = await client.delete(f"/openai/models/{NAME}", params={"force": "true"})
    assert forced.status == 200
    assert await forced.json() == {"id": NAME, "object": "model", "deleted": True}
    assert inference.unloaded == [NAME]
    assert await (await client.get("/openai/models")).json() == []


async def test_the_openai_sdk_deletes_a_cached_model(client):
    await read_download(client, sdk_download_body())
    sdk = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0)
    deleted = await sdk.models.delete(ALIAS)
    assert (deleted.id, deleted.deleted) == (NAME, True)
    with pytest.raises(openai.NotFoundError):
        await sdk.models.delete(NAME)


async def test_a_bad_force_value_is_a_400_naming_force(client):
    response = await client.delete(f"/openai/models/{NAME}", params={"force": "perhaps"})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "force"


async def test_too_little_disk_space_is_a_507_saying_so_before_streaming(client, small_disk):
    response = await client.post("/openai/download", json={**sdk_download_body(), "customDirPath": str(small_disk)})
    assert response.status == 507
    body = await response.json()
    assert body["success"] is False and "Not enough disk space" in body["errorMessage"]
    assert body["error"]["code"] == "insufficient_storage" and "Retry-After" not in response.headers
