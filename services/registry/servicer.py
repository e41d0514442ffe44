"""RegistryService over the cache on disk: every call rescans, so a model that lands or leaves is seen at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from ingot.common.errors import InvalidArgument, NotFound
from ingot.common.v1 import common_pb2
from ingot.registry.v1 import registry_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2_grpc as pb_grpc
from services.registry.cache import CachedModel, resolve, scan

TASKS = {
    "chat-completion": common_pb2.MODEL_TASK_CHAT_COMPLETION,
    "embeddings": common_pb2.MODEL_TASK_EMBEDDINGS,
}


def task_of(model: CachedModel) -> common_pb2.ModelTask:
    return TASKS.get(model.task.lower(), common_pb2.MODEL_TASK_UNSPECIFIED)


def model_info(model: CachedModel) -> pb.ModelInfo:
    return pb.ModelInfo(
        id=model.id,
        alias=model.alias,
        display_name=model.display_name,
        publisher=model.publisher,
        task=task_of(model),
        path=str(model.path),
        context_length=model.context_length,
        max_output_tokens=model.max_output_tokens,
        license=model.license,
        size_bytes=model.size_bytes,
        created=model.created,
        supports_tool_calling=model.supports_tool_calling,
        device_type=model.device_type,
        execution_provider=model.execution_provider,
    )


class RegistryServicer(pb_grpc.RegistryServiceServicer):
    def __init__(self, models_root: Path) -> None:
        self.models_root = models_root

    async def _scan(self) -> list[CachedModel]:
        # The cache may sit on a shared volume: its stat calls stay off the event loop.
        return await asyncio.to_thread(scan, self.models_root)

    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        models = await self._scan()
        if request.task != common_pb2.MODEL_TASK_UNSPECIFIED:
            models = [m for m in models if task_of(m) == request.task]
        return pb.ListModelsResponse(models=[model_info(m) for m in models])

    async def ResolveModel(self, request: pb.ResolveModelRequest,
                           context: grpc.aio.ServicerContext) -> pb.ResolveModelResponse:
        if not request.name:
            raise InvalidArgument("A model name is required.", param="model")
        model = resolve(await self._scan(), request.name)
        if model is None:
            raise NotFound(f"The model '{request.name}' does not exist or is not in the local cache.",
                           param="model", code="model_not_found")
        return pb.ResolveModelResponse(model=model_info(model))
