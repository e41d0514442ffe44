"""The edge's aiohttp application: routes, the error middleware, and the gRPC channels' lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from edge import chat, completions, downloads, embeddings, foundry, health, loading, models, tokens
from edge.azure import app as azure
from edge.backends import BACKENDS, Backends
from edge.errors import error_middleware
from edge.settings import EdgeSettings

SETTINGS = web.AppKey("settings", EdgeSettings)


async def _backends(app: web.Application) -> AsyncIterator[None]:
    # Opened here rather than in create_app: grpc.aio channels belong to the loop that runs the app.
    backends = Backends(app[SETTINGS])
    app[BACKENDS] = backends
    try:
        yield
    finally:
        await backends.close()


def create_app(settings: EdgeSettings) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_backends)
    app.add_routes(chat.routes)
    app.add_routes(embeddings.routes)
    app.add_routes(completions.routes)
    app.add_routes(tokens.routes)
    app.add_routes(models.routes)
    app.add_routes(health.routes)
    app.add_routes(loading.routes)
    app.add_routes(foundry.routes)
    app.add_routes(downloads.routes)
    azure.mount(app)
    return app
