"""Azure's POST /chat/completions and POST /completions: the `extra-parameters` header and the model's
capabilities have their say, then the request runs through the same code as OpenAI's routes (edge/openai/chat.py,
edge/openai/completions.py); this sub-application renders errors in Azure's shapes, and streams are `data:` lines
only, as the azure-ai-inference SDK's parser requires.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from edge.azure.params import deployment, extra_parameters
from edge.mesh.backends import BACKENDS
from edge.azure.capabilities import refuse_unsupported
from edge.openai.chat import run_chat
from edge.openai.completions import run_completions
from edge.openai.parsing import parse_chat_request, parse_completion_request, parse_json_object
from edge.openai.schemas import ChatCompletionRequest, CompletionRequest

routes = web.RouteTableDef()

# The Azure AI Model Inference API's own chat parameters; the rest of what this server understands
# (top_k, repetition_penalty, n, logprobs, ...) reaches the model only with extra-parameters: pass-through.
CHAT_SPEC = frozenset({"messages", "model", "frequency_penalty", "presence_penalty", "temperature", "top_p",
                       "max_tokens", "response_format", "stop", "stream", "tools", "tool_choice", "seed",
                       "modalities"})
CHAT_EXTRAS = frozenset(ChatCompletionRequest.model_fields) - CHAT_SPEC
COMPLETION_SPEC = frozenset({"prompt", "model", "frequency_penalty", "presence_penalty", "temperature", "top_p",
                             "max_tokens", "stop", "stream", "seed", "n", "echo", "suffix", "logprobs", "user",
                             "logit_bias", "stream_options"})
COMPLETION_EXTRAS = frozenset(CompletionRequest.model_fields) - COMPLETION_SPEC


async def _body(request: web.Request, *, spec: frozenset[str], extras: frozenset[str],
                schema: type[BaseModel]) -> bytes:
    """The request body after Azure's checks, as JSON for the shared parser."""
    body: dict[str, Any] = extra_parameters(request, parse_json_object(await request.read()), spec=spec,
                                            model_extras=extras)
    body["model"] = deployment(request, body.get("model"))
    model = await request.config_dict[BACKENDS].resolve_model(body["model"])
    refuse_unsupported(model, body, schema)
    return json.dumps(body).encode()


@routes.post("/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await _body(request, spec=CHAT_SPEC, extras=CHAT_EXTRAS, schema=ChatCompletionRequest)
    return await run_chat(request, parse_chat_request(body))


@routes.post("/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    body = await _body(request, spec=COMPLETION_SPEC, extras=COMPLETION_EXTRAS, schema=CompletionRequest)
    return await run_completions(request, parse_completion_request(body))
