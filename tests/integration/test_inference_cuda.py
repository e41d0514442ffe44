"""The CUDA path, where the host has one: `make setup CUDA=1` on a machine with an NVIDIA GPU."""

from __future__ import annotations

import onnxruntime
import pytest

from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb
from services.inference.models import available_providers
from tests.integration.inference_harness import request

pytestmark = pytest.mark.skipif(
    "cuda" not in available_providers(),
    reason=f"no CUDA here: onnxruntime offers {', '.join(onnxruntime.get_available_providers())}; "
           "run `make setup CUDA=1` on a host with an NVIDIA GPU to test the CUDA path",
)


async def test_a_model_loads_on_cuda_and_generates(inference, prompt_ids):
    await inference.SetDevice(pb.SetDeviceRequest(device_id=0))
    loaded = await inference.LoadModel(pb.LoadModelRequest(model="smollm2-135m-instruct", execution_provider="cuda"))
    assert loaded.model.execution_provider == "cuda"
    messages = [m async for m in inference.Generate(request(prompt_ids, max_tokens=8, temperature=0))]
    assert messages[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert "".join(m.text for m in messages).strip()
