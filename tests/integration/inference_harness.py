"""The inference service in-process on port 0 with the real SmolLM2 model, behind a stand-in registry."""

from __future__ import annotations

from contextlib import asynccontextmanager

import grpc

from ingot.common.errors import NotFound
from ingot.common.grpcserver import ServiceHost
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb
from ingot.inference.v1 import inference_service_pb2_grpc as pb_grpc
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc
from services.inference import server as inference_server
from services.inference.settings import InferenceSettings
from tests.conftest import SMOLLM2_ALIAS, SMOLLM2_ID

# What the tokenizer service renders for one user turn; here the inference service gets the ids directly.
PROMPT_TEXT = "<|im_start|>user\nWrite a long story about a dragon.<|im_end|>\n<|im_start|>assistant\n"


class StandInRegistry(registry_grpc.RegistryServiceServicer):
    def __init__(self, model_dir):
        self.info = registry_pb.ModelInfo(id=SMOLLM2_ID, alias=SMOLLM2_ALIAS, path=str(model_dir),
                                          task=common_pb2.MODEL_TASK_CHAT_COMPLETION, context_length=8192,
                                          max_output_tokens=2048)

    async def ResolveModel(self, request, context):
        if request.name not in (self.info.id, self.info.alias):
            raise NotFound(f"The model '{request.name}' does not exist.", param="model")
        return registry_pb.ResolveModelResponse(model=self.info)


@asynccontextmanager
async def serve_inference(model_dir, registry_servicer=None, **settings):
    registry = ServiceHost("registry", [])
    registry_grpc.add_RegistryServiceServicer_to_server(registry_servicer or StandInRegistry(model_dir),
                                                       registry.server)
    registry_address = await registry.start("127.0.0.1:0")
    host = ServiceHost("inference", [inference_server.SERVICE_NAME])
    config = InferenceSettings(listen="127.0.0.1:0", registry_address=registry_address, **settings)
    _, cleanup = inference_server.build(host.server, config)
    channel = grpc.aio.insecure_channel(await host.start("127.0.0.1:0"))
    try:
        yield pb_grpc.InferenceServiceStub(channel)
    finally:
        await channel.close()
        await host.stop(0)
        await cleanup()
        await registry.stop(0)


def request(prompt_ids, **sampling) -> pb.GenerateRequest:
    return pb.GenerateRequest(model=SMOLLM2_ALIAS, prompt_token_ids=prompt_ids, sampling=pb.SamplingParams(**sampling))
