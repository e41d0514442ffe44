"""POST /serving-endpoints/chat/completions, /serving-endpoints/completions, /serving-endpoints/embeddings:
OpenAI's API under the prefix that databricks-sdk's get_open_ai_client(), databricks-openai and
databricks-langchain give the openai client, `model` naming the endpoint.

They answer as /v1/* does, but in Databricks' error shape, and a string prompt on a chat model goes through
its chat template unless `use_raw_prompt` is true, as on every Databricks route.
"""

from __future__ import annotations

from aiohttp import web

from edge.databricks import adapter

routes = web.RouteTableDef()


@routes.post("/serving-endpoints/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await adapter.chat(request, adapter.parse_json_object(await request.read()))


@routes.post("/serving-endpoints/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    return await adapter.completions(request, adapter.parse_json_object(await request.read()),
                                     template_by_default=True)


@routes.post("/serving-endpoints/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    return await adapter.embeddings(request, adapter.parse_json_object(await request.read()))
