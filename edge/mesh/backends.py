"""The gRPC side of the edge: one channel per service and the typed calls the surfaces make.

Every grpc.RpcError leaves this module as the IngotError it stands for, named after the service that
failed, so routes and the error middleware never see gRPC exceptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from aiohttp import web

from edge.mesh import replicas
from edge.mesh.failover import RetriedBeforeFirstMessage
from edge.shared.settings import EdgeSettings
from ingot.common.channels import mesh_channel
from ingot.common.meshtls import channel_credentials
from ingot.common.errors import DeadlineExceeded, NotFound, Unavailable, error_from_rpc
from ingot.common.resolver import ModelResolver
from ingot.common.v1 import common_pb2
from ingot.embeddings.v1 import embeddings_service_pb2 as embeddings_pb2
from ingot.embeddings.v1 import embeddings_service_pb2_grpc as embeddings_grpc
from ingot.inference.v1 import inference_service_pb2 as inference_pb2
from ingot.inference.v1 import inference_service_pb2_grpc as inference_grpc
from ingot.registry.v1 import registry_service_pb2 as registry_pb2
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc
from ingot.tokenizer.v1 import tokenizer_service_pb2 as tokenizer_pb2
from ingot.tokenizer.v1 import tokenizer_service_pb2_grpc as tokenizer_grpc


@contextmanager
def translated(service: str) -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as err:
        error = error_from_rpc(err, service=service)
        if isinstance(error, NotFound) and error.param is None:
            # Every call the edge makes is about a model: a miss that names nothing is the request's `model`.
            error.param = "model"
        raise error from None



async def translated_stream(call: grpc.aio.UnaryStreamCall, service: str) -> AsyncIterator[Any]:
    """The messages of a server stream, a failure raised as the IngotError it stands for."""
    with translated(service):
        async for message in call:
            yield message


@dataclass(frozen=True)
class Service:
    name: str
    address: str
    channel: grpc.aio.Channel


class Backends:
    """Channels and stubs for the services the edge calls; open only inside a running event loop."""

    def __init__(self, settings: EdgeSettings) -> None:
        addresses = {
            "tokenizer": settings.tokenizer_address,
            "registry": settings.registry_address,
            "inference": settings.inference_address,
            "embeddings": settings.embeddings_address,
        }
        credentials = channel_credentials(settings)
        self.services = {name: Service(name, address, mesh_channel(address, credentials))
                         for name, address in addresses.items() if address}
        self.tokenizer = tokenizer_grpc.TokenizerServiceStub(self.services["tokenizer"].channel)
        self.registry = registry_grpc.RegistryServiceStub(self.services["registry"].channel)
        self.inference = inference_grpc.InferenceServiceStub(self.services["inference"].channel)
        embeddings = self.services.get("embeddings")
        self.embeddings = embeddings_grpc.EmbeddingsServiceStub(embeddings.channel) if embeddings else None
        # The deadline of every unary call below.
        self.call_timeout = settings.call_timeout
        self.first_token_timeout = settings.first_token_timeout
        self._resolver = ModelResolver(self.registry, timeout_s=self.call_timeout)

    async def close(self) -> None:
        await asyncio.gather(*(service.channel.close() for service in self.services.values()))

    async def resolve_model(self, name: str) -> registry_pb2.ModelInfo:
        return (await self.resolve(name)).model

    async def resolve(self, name: str) -> registry_pb2.ResolveModelResponse:
        """The model `name` means and, where it names a deployment, the deployment's settings."""
        try:
            return await self._resolver.resolve_name(name)
        except NotFound as error:
            # The registry names its own field; to the HTTP client the unknown name is its `model`.
            error.param = "model"
            raise

    async def resolve_uncached(self, name: str) -> registry_pb2.ModelInfo:
        """What `name` means now, past the resolve cache: for a change (a delete) that wants the truth."""
        with translated("registry"):
            reply = await self.registry.ResolveModel(registry_pb2.ResolveModelRequest(name=name),
                                                     timeout=self.call_timeout)
        return reply.model

    async def list_catalog(self, *, refresh: bool) -> Sequence[registry_pb2.CatalogEntry]:
        with translated("registry"):
            # A refresh may wait on the catalog host, which has its own (longer) timeout in the registry.
            reply = await self.registry.ListCatalog(registry_pb2.ListCatalogRequest(refresh=refresh),
                                                    timeout=self.call_timeout * (6 if refresh else 1))
        return reply.models

    async def cache_path(self) -> str:
        with translated("registry"):
            cache = await self.registry.GetCache(registry_pb2.GetCacheRequest(), timeout=self.call_timeout)
        return cache.path

    async def delete_model(self, name: str) -> None:
        with translated("registry"):
            await self.registry.DeleteModel(registry_pb2.DeleteModelRequest(name=name), timeout=self.call_timeout)

    # No deadline on the two streams below: they last as long as the transfer; the client that leaves cancels.
    def download_model(self, *, name: str, uri: str, token: str, custom_dir: str,
                       buffer_size_kb: int) -> grpc.aio.UnaryStreamCall:
        return self.registry.DownloadModel(registry_pb2.DownloadModelRequest(
            name=name, uri=uri, token=token, custom_dir=custom_dir, buffer_size_kb=buffer_size_kb))

    def import_model(self, *, path: str, name: str, alias: str, accuracy: str,
                     force: bool) -> grpc.aio.UnaryStreamCall:
        return self.registry.ImportModel(registry_pb2.ImportModelRequest(
            path=path, name=name, alias=alias, accuracy=accuracy, force=force))

    async def loaded_models_by_replica(self, timeout: float | None = None) -> dict[str, list[inference_pb2.LoadedModel]]:
        """What each inference replica that is up holds, by replica address."""
        return await replicas.loaded_models(self.services["inference"], timeout or self.call_timeout)

    async def loaded_models(self, timeout: float | None = None) -> list[inference_pb2.LoadedModel]:
        """Every model some inference replica holds, once each."""
        held = await self.loaded_models_by_replica(timeout)
        return list({model.id: model for models in held.values() for model in models}.values())

    async def load_model(self, model: str, *, execution_provider: str, ttl_seconds: int | None,
                         timeout: float) -> None:
        """Loads on every inference replica that is up."""
        request = inference_pb2.LoadModelRequest(model=model, execution_provider=execution_provider)
        if ttl_seconds is not None:
            request.ttl_seconds = ttl_seconds
        await replicas.load_model(self.services["inference"], request, timeout)

    async def unload_model(self, model: str, *, force: bool) -> None:
        """Unloads from every inference replica that is up; NotFound when none held it."""
        await replicas.unload_model(self.services["inference"],
                                    inference_pb2.UnloadModelRequest(model=model, force=force), self.call_timeout)

    async def device(self) -> int:
        with translated("inference"):
            reply = await self.inference.GetDevice(inference_pb2.GetDeviceRequest(), timeout=self.call_timeout)
        return reply.device_id

    async def set_device(self, device_id: int) -> None:
        with translated("inference"):
            await self.inference.SetDevice(inference_pb2.SetDeviceRequest(device_id=device_id),
                                           timeout=self.call_timeout)

    async def list_models(self) -> Sequence[registry_pb2.ModelInfo]:
        with translated("registry"):
            reply = await self.registry.ListModels(registry_pb2.ListModelsRequest(), timeout=self.call_timeout)
        return reply.models

    async def list_deployments(self) -> Sequence[registry_pb2.Deployment]:
        with translated("registry"):
            reply = await self.registry.ListDeployments(registry_pb2.ListDeploymentsRequest(),
                                                        timeout=self.call_timeout)
        return reply.deployments

    async def apply_chat_template(self, model: str, messages: Sequence[common_pb2.ChatMessage],
                                  tools_json: str = "") -> list[int]:
        request = tokenizer_pb2.ApplyChatTemplateRequest(model=model, messages=messages, tools_json=tools_json)
        with translated("tokenizer"):
            reply = await self.tokenizer.ApplyChatTemplate(request, timeout=self.call_timeout)
        return list(reply.token_ids)

    def _embeddings(self) -> embeddings_grpc.EmbeddingsServiceStub:
        if self.embeddings is None:
            raise Unavailable("No embeddings service is configured for this server (--embeddings-address).")
        return self.embeddings

    # No deadline on the two calls below: a long input list legitimately takes seconds on a small machine,
    # and a client that gives up cancels the call (aiohttp cancels the handler).
    async def embed(self, request: embeddings_pb2.EmbedRequest) -> embeddings_pb2.EmbedResponse:
        stub = self._embeddings()
        with translated("embeddings"):
            return await stub.Embed(request)

    async def embed_images(self, request: embeddings_pb2.EmbedImagesRequest) -> embeddings_pb2.EmbedImagesResponse:
        stub = self._embeddings()
        with translated("embeddings"):
            return await stub.EmbedImages(request)
    async def render_chat(self, model: str, messages: Sequence[common_pb2.ChatMessage], *,
                          add_generation_prompt: bool | None = None,
                          continue_final_message: bool = False) -> tokenizer_pb2.ApplyChatTemplateResponse:
        request = tokenizer_pb2.ApplyChatTemplateRequest(model=model, messages=messages,
                                                         continue_final_message=continue_final_message)
        if add_generation_prompt is not None:
            request.add_generation_prompt = add_generation_prompt
        with translated("tokenizer"):
            return await self.tokenizer.ApplyChatTemplate(request, timeout=self.call_timeout)

    async def count_chat_tokens(self, model: str, messages: Sequence[common_pb2.ChatMessage],
                                tools_json: str = "") -> int:
        request = tokenizer_pb2.CountTokensRequest(
            model=model, conversation=tokenizer_pb2.Conversation(messages=messages, tools_json=tools_json))
        with translated("tokenizer"):
            reply = await self.tokenizer.CountTokens(request, timeout=self.call_timeout)
        return reply.token_count

    async def encode(self, model: str, text: str, *, add_special_tokens: bool) -> list[int]:
        request = tokenizer_pb2.EncodeRequest(model=model, text=text, add_special_tokens=add_special_tokens)
        with translated("tokenizer"):
            reply = await self.tokenizer.Encode(request, timeout=self.call_timeout)
        return list(reply.token_ids)

    async def decode(self, model: str, token_ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        request = tokenizer_pb2.DecodeRequest(model=model, token_ids=token_ids,
                                              skip_special_tokens=skip_special_tokens)
        with translated("tokenizer"):
            reply = await self.tokenizer.Decode(request, timeout=self.call_timeout)
        return reply.text

    def generate(self, request: inference_pb2.GenerateRequest) -> grpc.aio.UnaryStreamCall:
        # No overall deadline: a long completion is legitimate, and a client that gives up cancels the call.
        # Only the first message has one, so a hung inference service is a 504 rather than a hang.
        # A replica lost before the first message: the request goes to another (edge/mesh/failover.py).
        return FirstMessageDeadline(RetriedBeforeFirstMessage(lambda: self.inference.Generate(request)),
                                    self.first_token_timeout)


class FirstMessageDeadline:
    """A Generate call whose first message must arrive within `timeout` seconds; otherwise the call is
    cancelled and iterating it raises DeadlineExceeded. Everything else is the call's own."""

    def __init__(self, call: grpc.aio.UnaryStreamCall, timeout: float) -> None:
        self._call = call
        self._timeout = timeout

    def __getattr__(self, name: str):
        return getattr(self._call, name)

    async def __aiter__(self):
        messages = self._call.__aiter__()
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands as the first message
            # arrives, and the reader of this call then waits on a generation nobody wants.
            async with asyncio.timeout(self._timeout):
                first = await anext(messages)
        except StopAsyncIteration:
            return
        except TimeoutError:
            self._call.cancel()
            raise DeadlineExceeded(f"The inference service sent nothing within {self._timeout:g} s.") from None
        yield first
        async for message in messages:
            yield message


BACKENDS = web.AppKey("backends", Backends)
