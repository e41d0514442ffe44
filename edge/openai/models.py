"""GET /v1/models and /v1/models/{model}: every name a request may use, full names and aliases alike; and
DELETE /v1/models/{model}, which removes a model from the cache as Foundry Local's DELETE does."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from edge.foundry.catalog import delete_model
from edge.mesh.backends import BACKENDS
from edge.mesh.messages import ModelInfo
from edge.openai.schemas import Model, ModelList
from ingot.common.errors import NotFound

routes = web.RouteTableDef()


def entries(models: Iterable[ModelInfo]) -> list[Model]:
    named: dict[str, Model] = {}
    for info in models:
        for name in (info.id, info.alias):
            # Two versions of a model share an alias; the registry lists the one the alias resolves to first.
            if name and name not in named:
                named[name] = Model(id=name, created=info.created, owned_by=info.publisher)
    return list(named.values())


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    models = await request.config_dict[BACKENDS].list_models()
    return web.json_response(text=ModelList(data=entries(models)).model_dump_json())


# `.+` because a full name may hold a slash (publisher/model) and must still reach this route.
@routes.get("/v1/models/{model:.+}")
async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    for entry in entries(await request.config_dict[BACKENDS].list_models()):
        if entry.id == name:
            return web.json_response(text=entry.model_dump_json())
    raise NotFound(f"The model '{name}' does not exist.", param="model", code="model_not_found")


# So that `client.models.delete(name)` works.
@routes.delete("/v1/models/{model:.+}")
async def delete_openai(request: web.Request) -> web.Response:
    return await delete_model(request, request.match_info["model"])
