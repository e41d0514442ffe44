"""The registry service over gRPC: listing and resolving the cache, errors with their codes and params."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from ingot.common.errors import InvalidArgument, NotFound, error_from_rpc
from ingot.common.v1 import common_pb2
from ingot.registry.v1 import registry_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2_grpc as pb_grpc
from services.registry.server import SERVICE_NAME
from tests.conftest import SMOLLM2_ALIAS, SMOLLM2_ID
from tests.integration.helpers import health, serve_registry, start_process, stop_process



def write_model(models_root: Path, publisher: str, folder: str, manifest: dict | None) -> Path:
    path = models_root / publisher / folder
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"\0" * 1000)
    if manifest is not None:
        (path / "inference_model.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    write_model(models, "HuggingFaceTB", "SmolLM2-135M-Instruct-generic-cpu-1", {
        "Name": "SmolLM2-135M-Instruct-generic-cpu:1", "Alias": "smollm2-135m-instruct", "Publisher": "HuggingFaceTB",
        "Task": "chat-completion", "ContextLength": 8192, "MaxOutputTokens": 2048, "DeviceType": "CPU",
        "ExecutionProvider": "CPUExecutionProvider", "License": "apache-2.0"})
    write_model(models, "HuggingFaceTB", "SmolLM2-135M-Instruct-generic-cpu-2", {
        "Name": "SmolLM2-135M-Instruct-generic-cpu:2", "Alias": "smollm2-135m-instruct",
        "Task": "chat-completion"})
    write_model(models, "sentence-transformers", "all-MiniLM-L6-v2-generic-cpu-1", {
        "Name": "all-MiniLM-L6-v2-generic-cpu:1", "Alias": "all-minilm-l6-v2", "Task": "embeddings"})
    write_model(models, ".staging", "Downloading-generic-cpu-1", {"Name": "Downloading-generic-cpu:1"})
    write_model(models, "HuggingFaceTB", "NoManifest-generic-cpu-1", None)
    write_model(models, "HuggingFaceTB", "Broken-generic-cpu-1", {"Name": "Broken-generic-cpu:1", "ContextLength": "x"})
    return tmp_path


@pytest.fixture
async def registry(home: Path):
    host, address = await serve_registry(home / "models")
    async with grpc.aio.insecure_channel(address) as channel:
        yield pb_grpc.RegistryServiceStub(channel)
    await host.stop(0)


async def resolve(stub, name: str) -> pb.ModelInfo:
    return (await stub.ResolveModel(pb.ResolveModelRequest(name=name), timeout=10)).model


async def test_list_shows_only_complete_models_with_a_valid_manifest(registry):
    response = await registry.ListModels(pb.ListModelsRequest(), timeout=10)
    assert sorted(m.id for m in response.models) == [
        "SmolLM2-135M-Instruct-generic-cpu:1", "SmolLM2-135M-Instruct-generic-cpu:2",
        "all-MiniLM-L6-v2-generic-cpu:1"]


async def test_list_filters_by_task(registry):
    chat = await registry.ListModels(pb.ListModelsRequest(task=common_pb2.MODEL_TASK_CHAT_COMPLETION), timeout=10)
    embeddings = await registry.ListModels(pb.ListModelsRequest(task=common_pb2.MODEL_TASK_EMBEDDINGS), timeout=10)
    assert {m.task for m in chat.models} == {common_pb2.MODEL_TASK_CHAT_COMPLETION}
    assert len(chat.models) == 2
    assert [m.id for m in embeddings.models] == ["all-MiniLM-L6-v2-generic-cpu:1"]


async def test_resolve_by_full_name_fills_model_info_from_the_manifest(registry, home):
    info = await resolve(registry, "smollm2-135m-instruct-generic-cpu:1")
    folder = home / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct-generic-cpu-1"
    assert info.id == "SmolLM2-135M-Instruct-generic-cpu:1"
    assert (info.alias, info.publisher, info.task) == (
        "smollm2-135m-instruct", "HuggingFaceTB", common_pb2.MODEL_TASK_CHAT_COMPLETION)
    assert (info.context_length, info.max_output_tokens, info.license) == (8192, 2048, "apache-2.0")
    assert (info.device_type, info.execution_provider) == ("CPU", "CPUExecutionProvider")
    assert info.path == str(folder)
    assert Path(info.path).is_absolute()
    assert info.size_bytes == sum(f.stat().st_size for f in folder.iterdir())
    assert info.created == int((folder / "inference_model.json").stat().st_mtime)


async def test_resolve_by_alias_picks_the_highest_version(registry):
    assert (await resolve(registry, "SmolLM2-135M-Instruct")).id == "SmolLM2-135M-Instruct-generic-cpu:2"


async def test_resolve_by_name_without_version_picks_the_highest_version(registry):
    assert (await resolve(registry, "SmolLM2-135M-Instruct-generic-cpu")).id == "SmolLM2-135M-Instruct-generic-cpu:2"


@pytest.mark.parametrize("name", ["gpt-4o", "Downloading-generic-cpu:1", "NoManifest-generic-cpu:1",
                                  "Broken-generic-cpu:1"])
async def test_resolve_of_an_unknown_or_unlisted_model_is_not_found_on_param_model(registry, name):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await resolve(registry, name)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    error = error_from_rpc(caught.value)
    assert isinstance(error, NotFound)
    assert (error.param, error.code) == ("model", "model_not_found")
    assert error.message == f"The model '{name}' does not exist or is not in the local cache."


async def test_resolve_of_an_empty_name_is_invalid_argument_on_param_model(registry):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await resolve(registry, "")
    error = error_from_rpc(caught.value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(error, InvalidArgument) and error.param == "model"


async def test_a_model_that_lands_in_the_cache_is_resolvable_at_once(registry, home):
    write_model(home / "models", "New", "Fresh-generic-cpu-1", {"Name": "Fresh-generic-cpu:1", "Alias": "fresh"})
    assert (await resolve(registry, "fresh")).id == "Fresh-generic-cpu:1"


async def test_the_built_smollm2_is_listed_with_its_folder(smollm2_dir):
    host, address = await serve_registry(smollm2_dir.parent.parent)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            info = await resolve(pb_grpc.RegistryServiceStub(channel), SMOLLM2_ALIAS)
    finally:
        await host.stop(0)
    assert (info.id, info.path, info.task) == (SMOLLM2_ID, str(smollm2_dir), common_pb2.MODEL_TASK_CHAT_COMPLETION)
    assert info.context_length > 0
    assert info.size_bytes > 1_000_000


async def test_ingot_registry_runs_as_a_process_that_prints_its_address_and_answers_health(home):
    process, address = start_process(["registry", "--listen", "127.0.0.1:0", "--home", str(home)])
    try:
        assert await health(address, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(address) as channel:
            info = await resolve(pb_grpc.RegistryServiceStub(channel), "all-minilm-l6-v2")
        assert info.task == common_pb2.MODEL_TASK_EMBEDDINGS
    finally:
        assert stop_process(process) == 0


async def test_a_deployment_resolves_to_its_model_with_its_settings_and_is_listed(home):
    path = home / "deployments.yaml"
    path.write_text("deployments:\n"
                    "  - {name: smol-safe, model: smollm2-135m-instruct, content_safety: true,\n"
                    "     parameters: {temperature: 0}, requests_per_minute: 5}\n"
                    "  - {name: ghost, model: no-such-model}\n")
    host, address = await serve_registry(home / "models", path)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.RegistryServiceStub(channel)
            reply = await stub.ResolveModel(pb.ResolveModelRequest(name="SMOL-SAFE"), timeout=10)
            assert reply.model.id == "SmolLM2-135M-Instruct-generic-cpu:2"
            assert reply.deployment.name == "smol-safe" and reply.deployment.content_safety
            assert reply.deployment.requests_per_minute == 5
            plain = await stub.ResolveModel(pb.ResolveModelRequest(name=SMOLLM2_ALIAS), timeout=10)
            assert not plain.HasField("deployment")
            with pytest.raises(grpc.RpcError) as caught:
                await stub.ResolveModel(pb.ResolveModelRequest(name="ghost"), timeout=10)
            error = error_from_rpc(caught.value, service="registry")
            assert isinstance(error, NotFound) and "no-such-model" in error.message
            listed = await stub.ListDeployments(pb.ListDeploymentsRequest(), timeout=10)
            assert [d.name for d in listed.deployments] == ["smol-safe", "ghost"]
    finally:
        await host.stop(0)
