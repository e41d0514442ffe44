"""Models leave memory on their own: TTL expiry, least-recently-used eviction within a memory budget."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from ingot.common.errors import NotFound, error_from_rpc
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc
from services.inference.models import available_providers
from tests.integration.inference_harness import serve_inference

MB = 2**20
# Two names for the same folder, each counted as 100 MB: enough to exercise a 150 MB budget.
NAMES = ("first:1", "second:1")


class TwoNameRegistry(registry_grpc.RegistryServiceServicer):
    def __init__(self, model_dir):
        self.model_dir = model_dir

    async def ResolveModel(self, request, context):
        if request.name not in NAMES:
            raise NotFound(f"The model '{request.name}' does not exist.", param="model")
        return registry_pb.ResolveModelResponse(model=registry_pb.ModelInfo(
            id=request.name, path=str(self.model_dir), task=common_pb2.MODEL_TASK_CHAT_COMPLETION,
            context_length=8192, max_output_tokens=64, size_bytes=100 * MB))


@pytest.fixture()
async def inference(smollm2_dir):
    async with serve_inference(smollm2_dir, TwoNameRegistry(smollm2_dir), memory_budget_mb=150,
                               default_ttl_seconds=0) as stub:
        yield stub


async def loaded(stub) -> dict[str, pb.LoadedModel]:
    return {m.id: m for m in (await stub.ListLoadedModels(pb.ListLoadedModelsRequest())).models}


async def test_an_idle_model_unloads_once_its_ttl_runs_out(inference):
    reply = await inference.LoadModel(pb.LoadModelRequest(model="first:1", ttl_seconds=1))
    assert reply.model.ttl_seconds == 1
    assert "first:1" in await loaded(inference)
    for _ in range(60):
        if "first:1" not in await loaded(inference):
            break
        await asyncio.sleep(0.1)
    assert "first:1" not in await loaded(inference)


async def test_a_load_beyond_the_budget_evicts_the_least_recently_used_idle_model(inference):
    await inference.LoadModel(pb.LoadModelRequest(model="first:1"))
    await inference.LoadModel(pb.LoadModelRequest(model="second:1"))
    assert set(await loaded(inference)) == {"second:1"}
    await inference.LoadModel(pb.LoadModelRequest(model="first:1"))
    assert set(await loaded(inference)) == {"first:1"}


async def test_a_busy_model_is_never_evicted_and_the_load_says_why(inference):
    call = inference.Generate(pb.GenerateRequest(model="first:1", prompt_token_ids=[1, 4093, 198],
                                                 sampling=pb.SamplingParams(max_tokens=60, temperature=1.0)))
    await call.initial_metadata()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference.LoadModel(pb.LoadModelRequest(model="second:1"))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "memory budget" in caught.value.details()
    call.cancel()


async def test_unloading_a_busy_model_needs_force_which_fails_its_requests(inference):
    call = inference.Generate(pb.GenerateRequest(model="first:1", prompt_token_ids=[1, 4093, 198],
                                                 sampling=pb.SamplingParams(max_tokens=60, temperature=1.0)))
    await call.initial_metadata()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference.UnloadModel(pb.UnloadModelRequest(model="first:1"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await inference.UnloadModel(pb.UnloadModelRequest(model="first:1", force=True))
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async for _ in call:
            pass
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "first:1" not in await loaded(inference)


async def test_unloading_a_model_that_is_not_loaded_is_not_found(inference):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference.UnloadModel(pb.UnloadModelRequest(model="first:1"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_generate_ttl_applies_to_the_loaded_model(inference):
    async for _ in inference.Generate(pb.GenerateRequest(model="first:1", prompt_token_ids=[1, 4093, 198],
                                                         ttl_seconds=3600, sampling=pb.SamplingParams(max_tokens=1))):
        pass
    assert (await loaded(inference))["first:1"].ttl_seconds == 3600


async def test_an_execution_provider_this_host_lacks_is_invalid_argument_naming_ep(inference):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference.LoadModel(pb.LoadModelRequest(model="first:1", execution_provider="qnn"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(caught.value).param == "ep"
    assert "available: cpu" in caught.value.details()


async def test_the_cpu_provider_loads_and_is_reported(inference):
    reply = await inference.LoadModel(pb.LoadModelRequest(model="first:1", execution_provider="cpu"))
    assert reply.model.execution_provider == "cpu"


async def test_setting_a_gpu_device_takes_effect_only_where_there_is_a_gpu(inference):
    assert (await inference.GetDevice(pb.GetDeviceRequest())).device_id == 0
    if "cuda" in available_providers():
        await inference.SetDevice(pb.SetDeviceRequest(device_id=1))
        assert (await inference.GetDevice(pb.GetDeviceRequest())).device_id == 1
        return
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference.SetDevice(pb.SetDeviceRequest(device_id=1))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no GPU" in caught.value.details()
