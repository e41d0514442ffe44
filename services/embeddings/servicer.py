"""EmbeddingsService over gRPC: resolves models through the registry, loads them on first use, and hands
their inputs to the model's batcher."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import grpc

from ingot.common.errors import FailedPrecondition, InvalidArgument
from ingot.common.resolver import ModelResolver
from ingot.common.v1 import common_pb2
from ingot.embeddings.v1 import embeddings_service_pb2 as pb
from ingot.embeddings.v1 import embeddings_service_pb2_grpc as pb_grpc
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc
from services.embeddings import model as embedding_model
from services.embeddings.batcher import Batcher
from services.embeddings.settings import EmbeddingsSettings

INPUT_TYPES = {
    pb.INPUT_TYPE_UNSPECIFIED: None,
    pb.INPUT_TYPE_TEXT: "text",
    pb.INPUT_TYPE_QUERY: "query",
    pb.INPUT_TYPE_DOCUMENT: "document",
}
# Up to this much input the tokenizer takes tens of microseconds, less than a hop to a thread and back.
INLINE_TOKENIZE_CHARS = 2048
TASK_NAMES = {common_pb2.MODEL_TASK_CHAT_COMPLETION: "chat-completion"}


@dataclass
class Loaded:
    model: embedding_model.EmbeddingModel
    batcher: Batcher


class Models:
    """Names to loaded models: asks the registry, loads once however many calls ask at the same time."""

    def __init__(self, registry: registry_grpc.RegistryServiceStub, config: EmbeddingsSettings) -> None:
        self._resolver = ModelResolver(registry)
        self._config = config
        self._loading: dict[str, asyncio.Task[Loaded]] = {}

    async def resolve(self, name: str) -> registry_pb.ModelInfo:
        return await self._resolver.resolve(name)

    async def get(self, name: str) -> Loaded:
        info = await self.resolve(name)
        if info.task != common_pb2.MODEL_TASK_EMBEDDINGS:
            kind = f"a {TASK_NAMES[info.task]} model, not" if info.task in TASK_NAMES else "not"
            raise InvalidArgument(f"The model '{info.id}' is {kind} an embeddings model; embeddings need an "
                                  "embeddings model.", param="model", code="model_not_supported")
        task = self._loading.get(info.id)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            # A failed load is retried by the next call rather than remembered.
            task = self._loading[info.id] = asyncio.create_task(self._load(info))
        return await asyncio.shield(task)

    async def _load(self, info: registry_pb.ModelInfo) -> Loaded:
        model = await asyncio.to_thread(embedding_model.load, info.id, Path(info.path),
                                        intra_op_threads=self._config.intra_op_threads,
                                        spin_wait=self._config.spin_wait)
        c = self._config
        return Loaded(model, Batcher(model, max_batch_size=c.max_batch_size, max_batch_tokens=c.max_batch_tokens,
                                     max_queued=c.max_queued_inputs, run_overhead_tokens=c.run_overhead_tokens))

    def loaded(self) -> list[Loaded]:
        return [t.result() for t in self._loading.values() if t.done() and not t.cancelled() and t.exception() is None]

    async def unload(self, name: str) -> None:
        info = await self.resolve(name)
        task = self._loading.pop(info.id, None)
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            await task.result().batcher.close()

    async def close(self) -> None:
        for loaded in self.loaded():
            await loaded.batcher.close()


def _loaded_message(loaded: Loaded) -> pb.LoadedModel:
    model = loaded.model
    return pb.LoadedModel(id=model.id, dimensions=model.config.dimensions,
                          max_sequence_length=model.config.max_sequence_length,
                          embedded_inputs=model.embedded_inputs, batches=model.batches,
                          loaded_at=int(model.loaded_at))


class EmbeddingsServicer(pb_grpc.EmbeddingsServiceServicer):
    def __init__(self, models: Models, config: EmbeddingsSettings) -> None:
        self._models = models
        self._config = config

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        if not request.inputs:
            raise InvalidArgument("At least one input is required.", param="input")
        if len(request.inputs) > self._config.max_inputs_per_request:
            limit = self._config.max_inputs_per_request
            raise InvalidArgument(f"{len(request.inputs)} inputs is more than the {limit} one request may carry.",
                                  param="input")
        inputs: list[str | list[int]] = []
        for item in request.inputs:
            kind = item.WhichOneof("content")
            if kind is None:
                raise InvalidArgument(f"Input {len(inputs)} has neither text nor token ids.", param="input")
            inputs.append(item.text if kind == "text" else list(item.tokens.ids))
        loaded = await self._models.get(request.model)
        model = loaded.model
        prompt = model.prompt(INPUT_TYPES.get(request.input_type), request.instruction)
        dimensions = model.check_dimensions(request.dimensions if request.HasField("dimensions") else None)
        overflow = request.fail_on_overflow
        if sum(len(item) for item in inputs) <= INLINE_TOKENIZE_CHARS:
            encoded = model.encode(inputs, prompt, fail_on_overflow=overflow)
        else:
            # The tokenizer runs in Rust and releases the GIL, but a long list takes milliseconds.
            encoded = await asyncio.to_thread(model.encode, inputs, prompt, fail_on_overflow=overflow)
        vectors = model.shorten(await loaded.batcher.embed([e.ids for e in encoded]), dimensions)
        tokens = sum(len(e.ids) for e in encoded)
        return pb.EmbedResponse(
            model=model.id,
            embeddings=[pb.Embedding(values=vector.tolist(), token_count=len(e.ids), truncated=e.truncated)
                        for vector, e in zip(vectors, encoded, strict=True)],
            usage=common_pb2.Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def EmbedImages(self, request: pb.EmbedImagesRequest, context) -> pb.EmbedImagesResponse:
        if not request.inputs:
            raise InvalidArgument("At least one input is required.", param="input")
        for index, item in enumerate(request.inputs):
            if not item.image:
                raise InvalidArgument(f"Input {index} has no image.", param=f"input[{index}].image")
        if request.model:
            info = await self._models.resolve(request.model)
            raise FailedPrecondition(f"No image embedding model is deployed: the model '{info.id}' does not embed "
                                     "images.", param="model", code="image_embeddings_unavailable")
        raise FailedPrecondition("No image embedding model is deployed; this server embeds text only.",
                                 param="model", code="image_embeddings_unavailable")

    async def LoadModel(self, request: pb.LoadModelRequest, context) -> pb.LoadModelResponse:
        return pb.LoadModelResponse(model=_loaded_message(await self._models.get(request.model)))

    async def UnloadModel(self, request: pb.UnloadModelRequest, context) -> pb.UnloadModelResponse:
        await self._models.unload(request.model)
        return pb.UnloadModelResponse()

    async def ListLoadedModels(self, request, context) -> pb.ListLoadedModelsResponse:
        return pb.ListLoadedModelsResponse(models=[_loaded_message(m) for m in self._models.loaded()])
