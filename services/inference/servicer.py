"""InferenceService over gRPC: resolves models through the registry and bridges calls to the engine."""

from __future__ import annotations

import asyncio
import time

import grpc

from ingot.common.errors import InvalidArgument, error_from_rpc
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb
from ingot.inference.v1 import inference_service_pb2_grpc as pb_grpc
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc
from services.inference import sampling
from services.inference.engine import Engine, Failed, Finished, Sequence, Tokens, asyncio_emitter

REGISTRY_TIMEOUT_S = 10.0
# A resolution is reused this long, so a burst of requests asks the registry once.
RESOLVE_TTL_S = 5.0


class ModelDirectory:
    """Names to registry ModelInfo, cached briefly."""

    def __init__(self, registry: registry_grpc.RegistryServiceStub) -> None:
        self._registry = registry
        self._cache: dict[str, tuple[float, registry_pb.ModelInfo]] = {}

    async def resolve(self, name: str) -> registry_pb.ModelInfo:
        if not name:
            raise InvalidArgument("A model name is required.", param="model")
        hit = self._cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < RESOLVE_TTL_S:
            return hit[1]
        try:
            response = await self._registry.ResolveModel(
                registry_pb.ResolveModelRequest(name=name), timeout=REGISTRY_TIMEOUT_S)
        except grpc.RpcError as err:
            raise error_from_rpc(err, service="registry") from None
        self._cache[name] = (time.monotonic(), response.model)
        return response.model


def _loaded_message(model) -> pb.LoadedModel:
    return pb.LoadedModel(id=model.id, active_sequences=model.active_sequences,
                          generated_tokens=model.generated_tokens, loaded_at=int(model.loaded_at))


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    def __init__(self, engine: Engine, directory: ModelDirectory) -> None:
        self._engine = engine
        self._directory = directory

    async def _chat_model(self, name: str):
        info = await self._directory.resolve(name)
        if info.task != common_pb2.MODEL_TASK_CHAT_COMPLETION:
            raise InvalidArgument(f"The model '{info.id}' is not a chat model.", param="model")
        return await self._engine.ensure_loaded(info)

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        model = await self._chat_model(request.model)
        prompt = list(request.prompt_token_ids)
        if prompt and max(prompt) >= model.vocab_size:
            raise InvalidArgument(
                f"Token id {max(prompt)} is outside the model's vocabulary of {model.vocab_size}.", param="prompt")
        requested = request.sampling.max_tokens if request.sampling.HasField("max_tokens") else None
        budget = sampling.budget(len(prompt), requested, context_length=model.info.context_length,
                                 max_output_tokens=model.info.max_output_tokens or model.info.context_length)
        options = sampling.search_options(request.sampling, budget.max_length)
        events: asyncio.Queue = asyncio.Queue()
        sequence = Sequence(model_id=model.id, prompt=prompt, search_options=options, budget=budget,
                            emit=asyncio_emitter(asyncio.get_running_loop(), events))
        self._engine.submit(sequence)
        try:
            # Headers go out on admission, so a caller knows its request is queued before the first token.
            await context.send_initial_metadata(())
            while True:
                batch = [await events.get()]
                while not events.empty():
                    batch.append(events.get_nowait())
                # Tokens that piled up while the client read slowly go out as one message.
                response = pb.GenerateResponse()
                for event in batch:
                    if isinstance(event, Tokens):
                        response.token_ids.extend(event.token_ids)
                        response.text += event.text
                    elif isinstance(event, Finished):
                        response.finish_reason = event.reason
                        response.usage.CopyFrom(common_pb2.Usage(
                            prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens,
                            total_tokens=event.prompt_tokens + event.completion_tokens))
                    elif isinstance(event, Failed):
                        if response.token_ids:
                            yield response
                        raise event.error
                yield response
                if response.finish_reason:
                    return
        finally:
            # A no-op after a normal finish; on a cancelled call the engine drops the sequence before its next step.
            sequence.cancel()

    async def LoadModel(self, request: pb.LoadModelRequest, context) -> pb.LoadModelResponse:
        return pb.LoadModelResponse(model=_loaded_message(await self._chat_model(request.model)))

    async def UnloadModel(self, request: pb.UnloadModelRequest, context) -> pb.UnloadModelResponse:
        info = await self._directory.resolve(request.model)
        await self._engine.unload(info.id)
        return pb.UnloadModelResponse()

    async def ListLoadedModels(self, request, context) -> pb.ListLoadedModelsResponse:
        return pb.ListLoadedModelsResponse(models=[_loaded_message(m) for m in self._engine.loaded()])
