"""Foundry Local's catalog and cache routes: /foundry/list, /openai/models, /openai/status, and deleting a model
(which OpenAI's DELETE /v1/models/{model}, in edge/openai/models.py, does the same way).

Shapes follow what Foundry Local's SDKs parse: /foundry/list is a bare array whose entries carry every field
the Python SDK's model requires; /openai/status is camelCase (the C# SDK reads `modelDirPath` case-sensitively).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from edge.mesh.backends import BACKENDS
from edge.mesh.messages import CatalogEntry, struct_dict
from edge.shared.query import check_query, flag
from ingot.common.errors import FailedPrecondition

routes = web.RouteTableDef()

def foundry_entry(entry: CatalogEntry) -> dict[str, Any]:
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
        "modelSettings": struct_dict(entry.model_settings) or {"parameters": []},
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
    entries = await backends.list_catalog(refresh=refresh)
    return web.json_response([foundry_entry(entry) for entry in entries])


@routes.get("/openai/models")
async def cached_models(request: web.Request) -> web.Response:
    check_query(request, set())
    models = await request.config_dict[BACKENDS].list_models()
    return web.json_response([model.id for model in models])


@routes.get("/openai/status")
async def status(request: web.Request) -> web.Response:
    check_query(request, set())
    path = await request.config_dict[BACKENDS].cache_path()
    # There is no named pipe: every report goes over HTTP, which is what `ignorePipeReport` asks for anyway.
    return web.json_response({"endpoints": [f"{request.scheme}://{request.host}"], "modelDirPath": path,
                              "pipeName": ""})


async def delete_model(request: web.Request, name: str) -> web.Response:
    check_query(request, {"force"})
    backends = request.config_dict[BACKENDS]
    force = flag(request, "force")
    # Straight to the registry, not through the edge's short-lived resolve cache: deleting wants the truth.
    model = await backends.resolve_uncached(name)
    if model.id in {loaded.id for loaded in await backends.loaded_models()}:
        if not force:
            raise FailedPrecondition(f"The model '{model.id}' is loaded; unload it first (GET /openai/unload/"
                                     f"{model.id}) or delete it with force=true.", param="model", code="model_in_use")
        await backends.unload_model(model.id, force=True)
    await backends.delete_model(model.id)
    return web.json_response({"id": model.id, "object": "model", "deleted": True})


@routes.delete("/openai/models/{name:.+}")
async def delete_cached(request: web.Request) -> web.Response:
    return await delete_model(request, request.match_info["name"])

