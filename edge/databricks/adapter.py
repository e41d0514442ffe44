"""Everything the Databricks surface takes from the rest of the edge, in one module: the chat, completions and
embeddings pipelines the OpenAI routes run, the registry's models and deployments, and the error mapping's
hook. The other modules of this package import only from here, so a change of the edge's layout is a change
of this file alone; no protobuf type leaves it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edge.backends import BACKENDS, translated
from edge.chat import run_chat
from edge.completions import run_completions
from edge.embeddings import response_body
from edge.embeddings_schemas import OpenAIEmbeddingsRequest, embed_request
from edge.errors import ERROR_BODY, Failure
from edge.parsing import parse_chat_request, parse_completion_request, parse_json_object, validate
from ingot.common.errors import NotFound
from ingot.common.v1 import common_pb2
from ingot.registry.v1 import registry_service_pb2 as registry_pb2

__all__ = ["ERROR_BODY", "Endpoint", "Failure", "chat", "completions", "embeddings", "endpoint", "endpoints",
           "parse_json_object"]

log = logging.getLogger(__name__)

# Databricks' task names for what an endpoint serves. A chat model serves the completions task too (through
# its chat template), but Databricks lists such an endpoint as a chat one.
TASKS = {
    common_pb2.MODEL_TASK_CHAT_COMPLETION: "llm/v1/chat",
    common_pb2.MODEL_TASK_EMBEDDINGS: "llm/v1/embeddings",
}


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
        name = info.alias or info.id
        # Two versions share an alias; the registry lists the one the alias resolves to first.
        if info.task in TASKS and name not in listed:
            listed[name] = Endpoint(name, TASKS[info.task], info.id, info.created)
    with translated("registry"):
        reply = await backends.registry.ListDeployments(registry_pb2.ListDeploymentsRequest(),
                                                        timeout=backends.call_timeout)
    for deployment in reply.deployments:
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
    if info.task not in TASKS:
        raise missing
    return Endpoint(name, TASKS[info.task], info.id, info.created)


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
