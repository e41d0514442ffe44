"""GET /openapi.json: the edge's OpenAPI description, generated from the same pydantic models that
validate requests and shape answers, so the description cannot drift from what the edge does."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from edge.openai.embeddings_schemas import OpenAIEmbeddingsRequest
from edge.openai.schemas import (ChatCompletion, ChatCompletionRequest, CompletionRequest, DetokenizeRequest,
                          Detokenized, ModelList, TextCompletion, TokenizeRequest, Tokenized)

routes = web.RouteTableDef()

REF = "#/components/schemas/{model}"
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}
# (method, path, request model, answer model, whether it may answer with an SSE stream)
OPERATIONS: list[tuple[str, str, type[BaseModel] | None, type[BaseModel] | None, bool]] = [
    ("post", "/v1/chat/completions", ChatCompletionRequest, ChatCompletion, True),
    ("post", "/v1/completions", CompletionRequest, TextCompletion, True),
    ("post", "/v1/embeddings", OpenAIEmbeddingsRequest, None, False),
    ("post", "/tokenize", TokenizeRequest, Tokenized, False),
    ("post", "/detokenize", DetokenizeRequest, Detokenized, False),
    ("get", "/v1/models", None, ModelList, False),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def document() -> dict[str, Any]:
    models = {m for _, _, request, answer, _ in OPERATIONS for m in (request, answer) if m is not None}
    keyed = [(m, "validation" if m.__name__.endswith("Request") else "serialization") for m in models]
    _, schemas = models_json_schema(sorted(keyed, key=lambda item: item[0].__name__), ref_template=REF)
    components = {**schemas.get("$defs", {}), "Error": ERROR}
    paths: dict[str, Any] = {}
    for method, path, request, answer, streams in OPERATIONS:
        content: dict[str, Any] = {"application/json": {"schema": _ref(answer) if answer else {"type": "object"}}}
        if streams:
            content["text/event-stream"] = {"schema": {"type": "string"}}
        operation: dict[str, Any] = {
            "operationId": f"{method}{path.replace('/', '_')}",
            "responses": {"200": {"description": "the answer", "content": content},
                          "default": {"description": "an error", "content": {
                              "application/json": {"schema": {"$ref": REF.format(model="Error")}}}}},
        }
        if request is not None:
            operation["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": _ref(request)}}}
        paths.setdefault(path, {})[method] = operation
    return {"openapi": "3.1.0", "info": {"title": "ingot", "version": "1"}, "paths": paths,
            "components": {"schemas": components}}


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())
