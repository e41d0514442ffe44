"""The edge's aiohttp application: routes, the error middleware, and the gRPC channels' lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from edge import (chat, completions, downloads, embeddings, foundry, health, imports, loading, models, observability,
                  openapi, tokens)
from edge.auth import AUTHENTICATOR, Authenticator, auth_middleware
from edge.azure import app as azure
from edge.azure import openai as azure_openai
from edge.contentsafety import CONTENT_FILTER, TermListFilter
from edge.deployments import RATE_LIMITS, RateLimits
from edge.backends import BACKENDS, Backends
from edge.drain import DRAIN, Drain
from edge.errors import error_middleware
from edge.limits import concurrency_middleware
from edge.settings import SETTINGS, EdgeSettings
from edge.sharedlimits import SharedLimits



async def _backends(app: web.Application) -> AsyncIterator[None]:
    # Opened here rather than in create_app: grpc.aio channels belong to the loop that runs the app.
    backends = Backends(app[SETTINGS])
    app[BACKENDS] = backends
    try:
        yield
    finally:
        await backends.close()


def _shared_limits(shared: SharedLimits):
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        shared.start()
        try:
            yield
        finally:
            await shared.close()

    return lifetime


def create_app(settings: EdgeSettings) -> web.Application:
    # Outermost first: the trace span, the request id, the metrics (which see the rendered status), the
    # error rendering, auth (inside it, so a 401 takes the shape of the route asked for), then the limits
    # (whose refusals the error middleware renders).
    drain = Drain()
    shared = SharedLimits(settings.redis_url) if settings.redis_url else None
    app = web.Application(
        middlewares=[observability.tracing_middleware(), observability.request_id_middleware,
                     observability.metrics_middleware, error_middleware, drain.middleware, auth_middleware,
                     concurrency_middleware(settings.max_concurrent_requests, settings.max_concurrent_per_key,
                                            shared)],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[DRAIN] = drain
    app[AUTHENTICATOR] = Authenticator.from_settings(settings)
    app[CONTENT_FILTER] = TermListFilter.from_file(settings.content_safety_terms)
    app[RATE_LIMITS] = RateLimits(shared)
    if shared is not None:
        app.cleanup_ctx.append(_shared_limits(shared))
    app.on_response_prepare.append(observability.stamp_request_id)
    app.add_routes(observability.routes)
    app.add_routes(openapi.routes)
    app.cleanup_ctx.append(_backends)
    app.add_routes(chat.routes)
    app.add_routes(embeddings.routes)
    app.add_routes(completions.routes)
    app.add_routes(tokens.routes)
    app.add_routes(models.routes)
    app.add_routes(health.routes)
    app.add_routes(loading.routes)
    app.add_routes(foundry.routes)
    app.add_routes(imports.routes)
    app.add_routes(downloads.routes)
    app.add_routes(azure_openai.routes)
    azure.mount(app)
    return app
