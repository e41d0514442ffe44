"""Every route of the edge, surface by surface: the one place to read what the edge answers.

A surface is a package over edge/mesh with its own schemas and error shape. It joins the edge with one line
here: its route tables in ROUTE_TABLES (routes of the root application, errors in OpenAI's shape), or its
`mount` in SUB_APPLICATIONS (a sub-application with its own middleware and error shape, as Azure's). A
surface that keeps state for the application's lifetime adds its cleanup context to LIFETIMES.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from edge.azure import app as azure
from edge.azure import openai as azure_openai
from edge.databricks import app as databricks
from edge.foundry import catalog, downloads, imports, loading
from edge.openai import chat, completions, embeddings, models, tokens
from edge.ops import health, metrics, openapi
from edge.responses import adapter as responses_state
from edge.responses import routes as responses

ROUTE_TABLES: list[web.RouteTableDef] = [
    # Operational: /metrics, /openapi.json, /health, /ready.
    metrics.routes, openapi.routes, health.routes,
    # OpenAI: /v1/chat/completions, /v1/embeddings, /v1/completions, tokens, /v1/models.
    chat.routes, embeddings.routes, completions.routes, tokens.routes, models.routes,
    # Foundry Local: load/unload/device, catalog and cache, import, download.
    loading.routes, catalog.routes, imports.routes, downloads.routes,
    # Azure OpenAI: /openai/deployments/{deployment}/... and /openai/v1/...
    azure_openai.routes,
    # OpenAI's Responses API: /v1/responses, and Azure OpenAI's /openai/v1/responses and /openai/responses.
    responses.routes,
]

# Azure AI Model Inference: bare paths and /models/..., ?api-version=, Azure's error shapes. Databricks:
# /api/2.0/serving-endpoints/..., /serving-endpoints/..., /.well-known/databricks-config, Databricks' error body.
SUB_APPLICATIONS: list[Callable[[web.Application], web.Application]] = [azure.mount, databricks.mount]

# State a surface keeps for the application's lifetime (aiohttp cleanup contexts): the stored responses.
LIFETIMES: list[Callable[[web.Application], AsyncIterator[None]]] = [responses_state.store_lifetime]


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.extend(LIFETIMES)
    for table in ROUTE_TABLES:
        app.add_routes(table)
    for mount in SUB_APPLICATIONS:
        mount(app)
