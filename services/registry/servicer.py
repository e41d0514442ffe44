"""RegistryService over the cache on disk and the catalog: every call rescans the cache, so a model that
lands or leaves is seen at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from ingot.common.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from ingot.common.modelcache import discard, model_lock, read_manifest
from ingot.common.v1 import common_pb2
from ingot.registry.v1 import registry_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2_grpc as pb_grpc
from services.registry import catalog
from services.registry.cache import CachedModel, resolve, scan
from services.registry.deployments import Deployments
from services.registry.downloads import Downloader, Finished, Progress
from services.registry.imports import PUBLISHER, ImportDone, ImportStep, check_request, run_import

log = logging.getLogger(__name__)

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


def catalog_entry(entry: catalog.Entry, cached: bool) -> pb.CatalogEntry:
    settings = struct_pb2.Struct()
    settings.update(entry.model_settings)
    return pb.CatalogEntry(
        name=entry.name, display_name=entry.display_name, provider_type=entry.provider_type, uri=entry.uri,
        version=entry.version, model_type=entry.model_type, prompt_template=entry.prompt_template,
        publisher=entry.publisher, task=entry.task, device_type=entry.device_type,
        execution_provider=entry.execution_provider, file_size_mb=entry.file_size_mb, model_settings=settings,
        alias=entry.alias, supports_tool_calling=entry.supports_tool_calling, license=entry.license,
        license_description=entry.license_description, parent_model_uri=entry.parent_model_uri,
        max_output_tokens=entry.max_output_tokens, min_fl_version=entry.min_fl_version, cached=cached,
    )


class RegistryServicer(pb_grpc.RegistryServiceServicer):
    def __init__(self, models_root: Path, *, remote: catalog.RemoteCatalog | None = None,
                 downloader: Downloader | None = None, providers: Sequence[str] = ("cpu",), deployments: Deployments | None = None,
                 import_roots: Sequence[Path] = ()) -> None:
        self.models_root = models_root
        self.import_roots = tuple(import_roots)
        self.remote = remote
        self.downloader = downloader
        self.providers = tuple(providers)
        self.deployments = deployments or Deployments(None)

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
        deployment = self.deployments.find(request.name)
        target = deployment.model if deployment is not None else request.name
        model = resolve(await self._scan(), target, self.providers)
        if model is None and deployment is not None:
            raise NotFound(f"The deployment '{deployment.name}' is bound to the model '{deployment.model}', which "
                           "does not exist or is not in the local cache.", param="model", code="model_not_found")
        if model is None:
            raise NotFound(f"The model '{request.name}' does not exist or is not in the local cache.",
                           param="model", code="model_not_found")
        reply = pb.ResolveModelResponse(model=model_info(model))
        if deployment is not None:
            reply.deployment.CopyFrom(deployment.proto())
        return reply

    async def ListDeployments(self, request: pb.ListDeploymentsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ListDeploymentsResponse:
        specs = await asyncio.to_thread(self.deployments.all)
        return pb.ListDeploymentsResponse(deployments=[spec.proto() for spec in specs])

    async def _cached_entries(self, models: Sequence[CachedModel]) -> list[catalog.Entry]:
        def read() -> list[catalog.Entry]:
            return [catalog.cached_entry(m, read_manifest(m.path)) for m in models]

        return await asyncio.to_thread(read)

    async def _catalog(self, *, refresh: bool = False) -> tuple[list[catalog.Entry], set[str]]:
        """Every model the registry can name, and the full names of those in the cache."""
        remote = await self.remote.entries(refresh=refresh) if self.remote is not None else []
        models = await self._scan()
        cached = {m.id.casefold() for m in models}
        return catalog.merge(remote, await self._cached_entries(models)), cached

    async def ListCatalog(self, request: pb.ListCatalogRequest,
                          context: grpc.aio.ServicerContext) -> pb.ListCatalogResponse:
        entries, cached = await self._catalog(refresh=request.refresh)
        return pb.ListCatalogResponse(models=[catalog_entry(e, e.name.casefold() in cached) for e in entries])

    def _target_root(self, custom_dir: str) -> Path:
        if not custom_dir:
            return self.models_root
        path = Path(custom_dir).expanduser()
        if not path.is_absolute():
            raise InvalidArgument(f"customDirPath must be an absolute path, not {custom_dir!r}.",
                                  param="customDirPath")
        if path.exists() and not path.is_dir():
            raise InvalidArgument(f"customDirPath {custom_dir!r} is not a directory.", param="customDirPath")
        return path

    async def _entry_to_download(self, name: str, uri: str) -> catalog.Entry:
        if not name and not uri:
            raise InvalidArgument("A model name is required.", param="model")
        entries, _ = await self._catalog()
        entry = catalog.resolve(entries, name, self.providers, uri)
        if entry is not None:
            return entry
        label = name or uri
        if self.remote is not None and self.remote.error:
            raise Unavailable(f"The model '{label}' is not cached, and {self.remote.error}.", param="model",
                              code="catalog_unavailable")
        where = "the catalog" if self.remote is not None and self.remote.configured else \
            "the local cache, and no catalog is configured (INGOT_CATALOG_URL)"
        raise NotFound(f"The model '{label}' is not in {where}.", param="model", code="model_not_found")

    async def DownloadModel(self, request: pb.DownloadModelRequest,
                            context: grpc.aio.ServicerContext) -> AsyncIterator[pb.DownloadModelResponse]:
        root = self._target_root(request.custom_dir)
        entry = await self._entry_to_download(request.name, request.uri)
        if self.downloader is None:
            raise Unavailable("This registry does not download models.")
        chunk = request.buffer_size_kb * 1024 if request.buffer_size_kb else None
        events = self.downloader.download(entry, root, token=request.token, chunk_bytes=chunk)
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Progress):
                    yield pb.DownloadModelResponse(progress=pb.DownloadProgress(
                        file=event.file, bytes_done=event.done, bytes_total=event.total, percent=event.percent))
                elif isinstance(event, Finished):
                    yield pb.DownloadModelResponse(finished=pb.DownloadFinished(
                        name=event.name, path=str(event.path), already_cached=event.already_cached))

    async def ImportModel(self, request: pb.ImportModelRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ImportModelResponse]:
        gguf = await asyncio.to_thread(check_request, request.path, request.accuracy,
                                        self.import_roots)
        if request.name:
            # One name, one model: an import may replace an earlier import, never a model from elsewhere.
            full = (request.name if ":" in request.name else f"{request.name}:1").casefold()
            existing = next((m for m in await self._scan() if m.id.casefold() == full), None)
            if existing is not None and existing.path.parent != self.models_root / PUBLISHER:
                raise AlreadyExists(f"The cache already holds a model named '{existing.id}' (from "
                                    f"{existing.publisher}); import under another name.", param="name",
                                    code="model_exists")
        events = run_import(self.models_root, gguf, name=request.name, alias=request.alias,
                            accuracy=request.accuracy, force=request.force)
        async with aclosing(events):
            async for event in events:
                if isinstance(event, ImportStep):
                    yield pb.ImportModelResponse(progress=pb.ImportProgress(percent=event.percent,
                                                                             message=event.message))
                elif isinstance(event, ImportDone):
                    log.info("%s: imported from %s into %s", event.name, gguf, event.path)
                    yield pb.ImportModelResponse(finished=pb.ImportFinished(
                        name=event.name, path=str(event.path), already_imported=event.already_imported))

    async def DeleteModel(self, request: pb.DeleteModelRequest,
                          context: grpc.aio.ServicerContext) -> pb.DeleteModelResponse:
        if not request.name:
            raise InvalidArgument("A model name is required.", param="model")
        model = resolve(await self._scan(), request.name)
        if model is None:
            raise NotFound(f"The model '{request.name}' is not in the local cache.", param="model",
                           code="model_not_found")
        async with model_lock(self.models_root, model.path.name):
            if not model.path.is_dir():
                raise NotFound(f"The model '{request.name}' is not in the local cache.", param="model",
                               code="model_not_found")
            await asyncio.to_thread(discard, model.path, self.models_root)
        log.info("%s: deleted from %s", model.id, model.path)
        return pb.DeleteModelResponse(name=model.id, path=str(model.path))

    async def GetCache(self, request: pb.GetCacheRequest, context: grpc.aio.ServicerContext) -> pb.GetCacheResponse:
        return pb.GetCacheResponse(path=str(self.models_root))
