"""Foundry Local's catalog and cache routes: /foundry/list, /openai/models, /openai/status, and deleting a model.

Shapes follow what Foundry Local's SDKs parse: /foundry/list is a bare array whose entries carry every field
the Python SDK's model requires; /openai/status is camelCase (the C# SDK reads `modelDirPath` case-sensitively).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from google.protobuf import json_format

from edge import replicas
from edge.backends import BACKENDS, Backends, translated
from edge.query import check_query, flag
from ingot.common.errors import FailedPrecondition
from ingot.inference.v1 import inference_service_pb2 as inference_pb2
from ingot.registry.v1 import registry_service_pb2 as registry_pb2

routes = web.RouteTableDef()

def foundry_entry(entry: registry_pb2.CatalogEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "displayName": entry.display_name,
        "providerType": entry.provider_type,
        "uri": entry.uri,
        "version": entry.version,
        "modelType": entry.model_type,
        "promptTemplate": dict(entry.prompt_template),
        "publisher": entry.publisher,
        "task": entry.task,
        "runtime": {"deviceType": entry.device_type, "executionProvider": entry.execution_provider},
        "fileSizeMb": entry.file_size_mb,
        "modelSettings": json_format.MessageToDict(entry.model_settings) or {"parameters": []},
        "alias": entry.alias,
        "supportsToolCalling": entry.supports_tool_calling,
        "license": entry.license,
        "licenseDescription": entry.license_description,
        "parentModelUri": entry.parent_model_uri,
        "maxOutputTokens": entry.max_output_tokens,
        "minFLVersion": entry.min_fl_version,
    }


@routes.get("/foundry/list")
async def foundry_list(request: web.Request) -> web.Response:
    check_query(request, {"refresh"})
    backends = request.config_dict[BACKENDS]
    refresh = flag(request, "refresh")
    with translated("registry"):
        # A refresh may wait on the catalog host, which has its own (longer) timeout in the registry.
        reply = await backends.registry.ListCatalog(registry_pb2.ListCatalogRequest(refresh=refresh),
                                                    timeout=backends.call_timeout * (6 if refresh else 1))
    return web.json_response([foundry_entry(entry) for entry in reply.models])


@routes.get("/openai/models")
async def cached_models(request: web.Request) -> web.Response:
    check_query(request, set())
    models = await request.config_dict[BACKENDS].list_models()
    return web.json_response([model.id for model in models])


@routes.get("/openai/status")
async def status(request: web.Request) -> web.Response:
    check_query(request, set())
    backends = request.config_dict[BACKENDS]
    with translated("registry"):
        cache = await backends.registry.GetCache(registry_pb2.GetCacheRequest(), timeout=backends.call_timeout)
    # There is no named pipe: every report goes over HTTP, which is what `ignorePipeReport` asks for anyway.
    return web.json_response({"endpoints": [f"{request.scheme}://{request.host}"], "modelDirPath": cache.path,
                              "pipeName": ""})


async def _loaded(backends: Backends) -> set[str]:
    """Models any inference replica holds."""
    held = await replicas.loaded_models(backends.services["inference"], backends.call_timeout)
    return {model.id for models in held.values() for model in models}


async def delete_model(request: web.Request, name: str) -> web.Response:
    check_query(request, {"force"})
    backends = request.config_dict[BACKENDS]
    force = flag(request, "force")
    # Straight to the registry, not through the edge's short-lived resolve cache: deleting wants the truth.
    with translated("registry"):
        model = (await backends.registry.ResolveModel(registry_pb2.ResolveModelRequest(name=name),
                                                      timeout=backends.call_timeout)).model
    if model.id in await _loaded(backends):
        if not force:
            raise FailedPrecondition(f"The model '{model.id}' is loaded; unload it first (GET /openai/unload/"
                                     f"{model.id}) or delete it with force=true.", param="model", code="model_in_use")
        await replicas.unload_model(backends.services["inference"],
                                    inference_pb2.UnloadModelRequest(model=model.id, force=True), backends.call_timeout)
    with translated("registry"):
        await backends.registry.DeleteModel(registry_pb2.DeleteModelRequest(name=model.id),
                                            timeout=backends.call_timeout)
    return web.json_response({"id": model.id, "object": "model", "deleted": True})


@routes.delete("/openai/models/{name:.+}")
async def delete_cached(request: web.Request) -> web.Response:
    return await delete_model(request, request.match_info["name"])


# OpenAI's own route, so `client.models.delete(name)` works too.
@routes.delete("/v1/models/{model:.+}")
async def delete_openai(request: web.Request) -> web.Response:
    return await delete_model(request, request.match_info["model"])
