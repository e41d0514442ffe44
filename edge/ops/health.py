"""GET /health (the edge process answers) and GET /ready (at least one replica of every service it calls
answers SERVING; each replica is reported where the address lists or resolves to several)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from edge.mesh.backends import BACKENDS, Service
from edge.mesh.replicas import service_health

routes = web.RouteTableDef()

RETRY_AFTER = "1"


async def check(service: Service) -> dict[str, object]:
    replicas = await service_health(service)
    serving = any(status == "SERVING" for status in replicas.values())
    # One replica's own status stands for the service; with several, serving means at least one serves.
    status = "SERVING" if serving else next(iter(replicas.values()))
    report: dict[str, object] = {"address": service.address, "status": status}
    if len(replicas) > 1:
        report["replicas"] = replicas
    return report


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    services = list(request.config_dict[BACKENDS].services.values())
    reports = await asyncio.gather(*(check(service) for service in services))
    report = {service.name: found for service, found in zip(services, reports, strict=True)}
    if all(found["status"] == "SERVING" for found in reports):
        return web.json_response({"status": "ready", "services": report})
    return web.json_response({"status": "not_ready", "services": report}, status=503,
                             headers={"Retry-After": RETRY_AFTER})
