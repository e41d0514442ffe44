"""POST /v1/embeddings (OpenAI, with Databricks' `instruction`); Azure OpenAI's routes (edge/azure/openai.py)
answer through `answer_embeddings` too.

The embeddings service resolves the model and refuses one that is not an embeddings model; this module
validates the body, asks for the vectors and encodes them.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from edge.mesh.backends import BACKENDS
from edge.mesh.embeddings import embed_request
from edge.mesh.messages import EmbedResponse
from edge.openai.embeddings_encoding import encode, vectors
from edge.openai.embeddings_schemas import OpenAIEmbeddingsRequest
from edge.openai.parsing import parse_json_object, validate

routes = web.RouteTableDef()


def response_body(reply: EmbedResponse, encoding_format: str) -> dict[str, Any]:
    """OpenAI's list of embeddings; Azure's adds an id."""
    data = encode(vectors(reply.embeddings), encoding_format)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": index, "embedding": value} for index, value in enumerate(data)],
        "model": reply.model,
        "usage": {"prompt_tokens": reply.usage.prompt_tokens, "total_tokens": reply.usage.total_tokens},
    }


async def answer_embeddings(request: web.Request, deployment: str | None = None) -> web.Response:
    body = parse_json_object(await request.read())
    if deployment is not None:
        # Azure OpenAI names the deployment in the path; the openai SDK repeats it (or not) as `model`.
        body["model"] = deployment
    embeddings = validate(OpenAIEmbeddingsRequest, body)
    reply = await request.config_dict[BACKENDS].embed(embed_request(embeddings.model, embeddings))
    return web.json_response(text=json.dumps(response_body(reply, embeddings.encoding_format or "float")))


@routes.post("/v1/embeddings")
async def create_embeddings(request: web.Request) -> web.Response:
    return await answer_embeddings(request)

