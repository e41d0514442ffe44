"""Azure OpenAI's routes, so that `openai.AzureOpenAI` and `openai.OpenAI(base_url=.../openai/v1)` work
unchanged: the deployment routes (`/openai/deployments/{deployment}/...?api-version=`) and the v1 routes
(no api-version). They speak OpenAI's API, errors included, so they belong to the root application.
"""

from __future__ import annotations

import json

from aiohttp import web

from edge.openai import models
from edge.openai.embeddings import answer_embeddings
from edge.openai.chat import run_chat
from edge.openai.completions import run_completions
from edge.openai.parsing import parse_chat_request, parse_completion_request, parse_json_object

routes = web.RouteTableDef()


async def _named(request: web.Request) -> bytes:
    """The body with the deployment of the path as its model (the openai SDK may repeat it, or not)."""
    body = parse_json_object(await request.read())
    body["model"] = request.match_info["deployment"]
    return json.dumps(body).encode()


@routes.post("/openai/deployments/{deployment}/chat/completions")
async def deployment_chat(request: web.Request) -> web.StreamResponse:
    return await run_chat(request, parse_chat_request(await _named(request)))


@routes.post("/openai/deployments/{deployment}/completions")
async def deployment_completions(request: web.Request) -> web.StreamResponse:
    return await run_completions(request, parse_completion_request(await _named(request)))


@routes.post("/openai/v1/chat/completions")
async def v1_chat(request: web.Request) -> web.StreamResponse:
    return await run_chat(request, parse_chat_request(await request.read()))


@routes.post("/openai/v1/completions")
async def v1_completions(request: web.Request) -> web.StreamResponse:
    return await run_completions(request, parse_completion_request(await request.read()))


@routes.get("/openai/v1/models")
async def v1_models(request: web.Request) -> web.StreamResponse:
    return await models.list_models(request)


# Azure OpenAI's v1 route, which the stock `openai.OpenAI` client reaches with base_url=.../openai/v1.
@routes.post("/openai/v1/embeddings")
async def create_embeddings_openai_v1(request: web.Request) -> web.Response:
    return await answer_embeddings(request)


# Azure OpenAI's deployment route, which `openai.AzureOpenAI` uses (it also sends ?api-version=).
@routes.post("/openai/deployments/{deployment}/embeddings")
async def create_embeddings_for_deployment(request: web.Request) -> web.Response:
    return await answer_embeddings(request, request.match_info["deployment"])
