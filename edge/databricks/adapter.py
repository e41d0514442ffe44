"""Everything the Databricks surface takes from the rest of the edge, in one module: the chat, completions and
embeddings pipelines the OpenAI routes run, the registry's models and deployments, and the error mapping's
hook. The other modules of this package import only from here, so a change of the edge's layout is a change
of this file alone. The services are reached through the mesh layer (edge/mesh); no protobuf type leaves
this module.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edge.mesh.backends import BACKENDS
from edge.mesh.embeddings import embed_request
from edge.mesh.messages import databricks_task
from edge.openai.chat import run_chat
from edge.openai.completions import run_completions
from edge.openai.embeddings import response_body
from edge.openai.embeddings_schemas import OpenAIEmbeddingsRequest
from edge.openai.parsing import parse_chat_request, parse_completion_request, parse_json_object, validate
from edge.shared.errors import ERROR_BODY, Failure
from ingot.common.errors import NotFound

__all__ = ["ERROR_BODY", "Endpoint", "Failure", "chat", "completions", "embeddings", "endpoint", "endpoints",
           "parse_json_object"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """A serving endpoint: a model, or a deployment of one, under the name a request uses."""

    name: str
    task: str
    # The full name of the model behind it.
    model: str
    created: int


async def endpoints(request: web.Request) -> list[Endpoint]:
    """Every chat and embeddings model (under its alias where it has one) and every deployment."""
    backends = request.config_dict[BACKENDS]
    listed: dict[str, Endpoint] = {}
    for info in await backends.list_models():
        name, task = info.alias or info.id, databricks_task(info)
        # Two versions share an alias; the registry lists the one the alias resolves to first.
        if task is not None and name not in listed:
            listed[name] = Endpoint(name, task, info.id, info.created)
    for deployment in await backends.list_deployments():
        try:
            listed[deployment.name] = await endpoint(request, deployment.name)
        except NotFound:
            # A deployment of a model that is not in the cache serves nothing until it is.
            log.info("deployment %s is not listed as an endpoint: its model %s is not cached", deployment.name,
                     deployment.model)
    return list(listed.values())


async def endpoint(request: web.Request, name: str) -> Endpoint:
    """The endpoint `name` names (a deployment, a model's alias or full name), or a 404."""
    missing = NotFound(f"Endpoint with name '{name}' does not exist.", param="name")
    try:
        info = (await request.config_dict[BACKENDS].resolve(name)).model
    except NotFound:
        raise missing from None
    task = databricks_task(info)
    if task is None:
        raise missing
    return Endpoint(name, task, info.id, info.created)


def _encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def chat(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    return await run_chat(request, parse_chat_request(_encoded(body)))


async def completions(request: web.Request, body: dict[str, Any], *,
                      template_by_default: bool) -> web.StreamResponse:
    return await run_completions(request, parse_completion_request(_encoded(body)),
                                 template_by_default=template_by_default)


async def embeddings(request: web.Request, body: dict[str, Any]) -> web.Response:
    options = validate(OpenAIEmbeddingsRequest, body)
    reply = await request.config_dict[BACKENDS].embed(embed_request(options.model, options))
    return web.json_response(text=json.dumps(response_body(reply, options.encoding_format or "float")))
