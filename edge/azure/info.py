"""Azure's GET /info: the name, type and provider of the model behind a deployment."""

from __future__ import annotations

from aiohttp import web

from edge.azure.params import deployment
from edge.mesh.backends import BACKENDS
from edge.mesh.messages import azure_model_type
from ingot.common.errors import FailedPrecondition

routes = web.RouteTableDef()

@routes.get("/info")
async def model_info(request: web.Request) -> web.Response:
    # A serverless Azure endpoint serves one model; here the deployment is named by the
    # azureml-model-deployment header (azure-core sends it with `headers=`) or ?model=.
    name = deployment(request, request.query.get("model"))
    info = await request.config_dict[BACKENDS].resolve_model(name)
    model_type = azure_model_type(info)
    if model_type is None:
        raise FailedPrecondition(f"The model '{info.id}' declares no task, so its type is unknown.", param="model")
    return web.json_response({"model_name": info.id, "model_type": model_type,
                              "model_provider_name": info.publisher})
