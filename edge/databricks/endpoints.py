"""GET /api/2.0/serving-endpoints (with and without the trailing slash mlflow sends), GET
/api/2.0/serving-endpoints/{name}, and GET /.well-known/databricks-config.

An endpoint is described with the fields databricks-sdk's ServingEndpoint and mlflow read, and nothing that
would send a client elsewhere (no data-plane URL, no route optimisation).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from edge.databricks import adapter
from ingot.common.errors import InvalidArgument

routes = web.RouteTableDef()

LIST_PATH = "/api/2.0/serving-endpoints"
# Served without authentication: databricks-sdk asks for it, tokenless, each time a client is built.
HOST_METADATA_PATH = "/.well-known/databricks-config"


def describe(endpoint: adapter.Endpoint) -> dict[str, Any]:
    # Databricks' timestamps are milliseconds.
    created = endpoint.created * 1000
    return {
        "name": endpoint.name,
        "id": endpoint.name,
        "creator": "ingot",
        "creation_timestamp": created,
        "last_updated_timestamp": created,
        "task": endpoint.task,
        "endpoint_type": "FOUNDATION_MODEL_API",
        "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
        "config": {"served_entities": [{"name": endpoint.name, "entity_name": endpoint.model,
                                        "foundation_model": {"name": endpoint.model}}]},
    }


def _no_query(request: web.Request) -> None:
    if request.query:
        name = next(iter(request.query))
        raise InvalidArgument(f"Unsupported query parameter: '{name}' is not supported by this server.", param=name)


async def list_endpoints(request: web.Request) -> web.Response:
    _no_query(request)
    return web.json_response({"endpoints": [describe(endpoint) for endpoint in await adapter.endpoints(request)]})


routes.get(LIST_PATH)(list_endpoints)
routes.get(LIST_PATH + "/")(list_endpoints)


@routes.get(LIST_PATH + "/{name}")
async def get_endpoint(request: web.Request) -> web.Response:
    _no_query(request)
    return web.json_response(describe(await adapter.endpoint(request, request.match_info["name"])))


@routes.get(HOST_METADATA_PATH)
async def host_metadata(request: web.Request) -> web.Response:
    # Empty on purpose: a workspace_id or oidc_endpoint here would change the headers and auth clients use.
    return web.json_response({})
