"""Foundry Local's model-loading routes: what is in the inference service's memory, and on which device.

Loading owns nothing here: each route is one InferenceService call. The registry decides whether a name
exists (404 naming it), the inference service whether it is loaded.
"""

from __future__ import annotations

from aiohttp import web

from edge.mesh.backends import BACKENDS
from edge.shared.query import check_query, flag, seconds
from ingot.common.errors import InvalidArgument, NotFound

routes = web.RouteTableDef()

# A first load reads the model from disk; generous, since nothing else waits on it.
LOAD_TIMEOUT_S = 300.0
def ttl_seconds(request: web.Request) -> int | None:
    """Foundry Local's rule: ttl > 0 wins; otherwise unload=false keeps the model (0 = never unload) and
    the default lets the service's own TTL apply. Older clients send `timeout` for `ttl`."""
    ttl = seconds(request, "ttl")
    if ttl is None:
        ttl = seconds(request, "timeout")
    if ttl:
        return ttl
    return None if flag(request, "unload", True) else 0


@routes.get("/openai/load/{name}")
async def load(request: web.Request) -> web.Response:
    check_query(request, {"ttl", "timeout", "unload", "ep"})
    backends = request.config_dict[BACKENDS]
    ttl = ttl_seconds(request)
    model = await backends.resolve_model(request.match_info["name"])
    await backends.load_model(model.id, execution_provider=request.query.get("ep", ""), ttl_seconds=ttl,
                              timeout=LOAD_TIMEOUT_S)
    return web.Response()


@routes.get("/openai/unload/{name}")
async def unload(request: web.Request) -> web.Response:
    check_query(request, {"force"})
    backends = request.config_dict[BACKENDS]
    force = flag(request, "force")
    model = await backends.resolve_model(request.match_info["name"])
    await _unload(backends, model.id, force=force)
    return web.Response()


async def _unload(backends, model_id: str, *, force: bool) -> None:
    try:
        await backends.unload_model(model_id, force=force)
    except NotFound:
        # The model exists and is not in memory: what unloading asks for is already true.
        pass


@routes.get("/openai/unloadall")
async def unload_all(request: web.Request) -> web.Response:
    backends = request.config_dict[BACKENDS]
    for model in await backends.loaded_models():
        await _unload(backends, model.id, force=True)
    return web.Response()


@routes.get("/openai/loadedmodels")
async def loaded_models(request: web.Request) -> web.Response:
    """Foundry Local's list of names, held by any inference replica; `by_replica=true` says which replica
    holds what."""
    check_query(request, {"by_replica"})
    backends = request.config_dict[BACKENDS]
    if flag(request, "by_replica"):
        held = await backends.loaded_models_by_replica()
        return web.json_response({"replicas": [{"address": address, "models": [model.id for model in models]}
                                               for address, models in held.items()]})
    return web.json_response([model.id for model in await backends.loaded_models()])


@routes.get("/openai/getgpudevice")
async def get_gpu_device(request: web.Request) -> web.Response:
    return web.json_response(await request.config_dict[BACKENDS].device())


@routes.get("/openai/setgpudevice/{device_id}")
async def set_gpu_device(request: web.Request) -> web.Response:
    backends = request.config_dict[BACKENDS]
    raw = request.match_info["device_id"]
    if not raw.isdigit():
        raise InvalidArgument(f"Invalid value for 'deviceId': expected a device number, got {raw!r}.",
                              param="deviceId")
    await backends.set_device(int(raw))
    return web.Response()

