"""The edge's aiohttp application: the middleware, the per-process state, the gRPC channels' lifetime, and
the routes edge/routes.py lists."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from edge import routes
from edge.shared import observability
from edge.shared.auth import AUTHENTICATOR, Authenticator, auth_middleware
from edge.shared.contentsafety import CONTENT_FILTER, TermListFilter
from edge.shared.deployments import RATE_LIMITS, RateLimits
from edge.mesh.backends import BACKENDS, Backends
from edge.shared.drain import DRAIN, Drain
from edge.shared.errors import error_middleware
from edge.shared.limits import concurrency_middleware
from edge.shared.settings import SETTINGS, EdgeSettings
from edge.shared.sharedlimits import SharedLimits



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
    app.cleanup_ctx.append(_backends)
    routes.add_routes(app)
    return app
