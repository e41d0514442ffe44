"""GET /health (the edge process answers) and GET /ready (every service it calls answers SERVING)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from edge.mesh.backends import BACKENDS, serving_status

routes = web.RouteTableDef()

# A readiness probe must answer quickly even when a service hangs; a second is ample on a healthy mesh.
CHECK_TIMEOUT = 1.0
RETRY_AFTER = "1"


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    services = list(request.config_dict[BACKENDS].services.values())
    statuses = await asyncio.gather(*(serving_status(service, CHECK_TIMEOUT) for service in services))
    report = {service.name: {"address": service.address, "status": status}
              for service, status in zip(services, statuses, strict=True)}
    if all(status == "SERVING" for status in statuses):
        return web.json_response({"status": "ready", "services": report})
    return web.json_response({"status": "not_ready", "services": report}, status=503,
                             headers={"Retry-After": RETRY_AFTER})
