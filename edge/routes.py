"""Every route of the edge, surface by surface: the one place to read what the edge answers.

A surface is a package over edge/mesh with its own schemas and error shape. It joins the edge with one line
here: its route tables in ROUTE_TABLES (routes of the root application, errors in OpenAI's shape), or its
`mount` in SUB_APPLICATIONS (a sub-application with its own middleware and error shape, as Azure's).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from edge.azure import app as azure
from edge.azure import openai as azure_openai
from edge.foundry import catalog, downloads, imports, loading
from edge.openai import chat, completions, embeddings, models, tokens
from edge.ops import health, metrics, openapi

ROUTE_TABLES: list[web.RouteTableDef] = [
    # Operational: /metrics, /openapi.json, /health, /ready.
    metrics.routes, openapi.routes, health.routes,
    # OpenAI: /v1/chat/completions, /v1/embeddings, /v1/completions, tokens, /v1/models.
    chat.routes, embeddings.routes, completions.routes, tokens.routes, models.routes,
    # Foundry Local: load/unload/device, catalog and cache, import, download.
    loading.routes, catalog.routes, imports.routes, downloads.routes,
    # Azure OpenAI: /openai/deployments/{deployment}/... and /openai/v1/...
    azure_openai.routes,
]

# Azure AI Model Inference: bare paths and /models/..., ?api-version=, Azure's error shapes.
SUB_APPLICATIONS: list[Callable[[web.Application], web.Application]] = [azure.mount]


def add_routes(app: web.Application) -> None:
    for table in ROUTE_TABLES:
        app.add_routes(table)
    for mount in SUB_APPLICATIONS:
        mount(app)
