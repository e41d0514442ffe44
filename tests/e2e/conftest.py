from __future__ import annotations

import grpc
import openai
import pytest

from ingot.inference.v1 import inference_service_pb2_grpc
from tests.e2e.mesh import Mesh


@pytest.fixture(scope="module")
def mesh(ingot_home, smollm2_dir):
    running = Mesh(ingot_home).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(mesh) -> openai.OpenAI:
    # No retries: a test must see the status the server sent, not what a retry got.
    return openai.OpenAI(base_url=f"{mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture()
def inference_stub(mesh):
    channel = grpc.insecure_channel(mesh.addresses["inference"])
    yield inference_service_pb2_grpc.InferenceServiceStub(channel)
    channel.close()
