"""GET /metrics: the edge's Prometheus metrics, with the inference service's gauges read at scrape time."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge.mesh.backends import BACKENDS
from ingot.common import metrics
from ingot.common.errors import IngotError

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# A scrape must not hang on a busy inference service; its gauges are then left as they were.
LOADED_MODELS_TIMEOUT = 1.0


async def _refresh_inference_gauges(request: web.Request) -> None:
    # Read at scrape time from the inference service, so the numbers are never stale.
    try:
        models = await request.config_dict[BACKENDS].loaded_models(timeout=LOADED_MODELS_TIMEOUT)
    except IngotError as error:
        log.debug("metrics: inference did not answer ListLoadedModels: %s", error.message)
        return
    metrics.LOADED_MODELS.set(len(models))
    metrics.ACTIVE_SEQUENCES.clear()
    for model in models:
        metrics.ACTIVE_SEQUENCES.labels(model.id).set(model.active_sequences)


@routes.get("/metrics")
async def prometheus_metrics(request: web.Request) -> web.Response:
    await _refresh_inference_gauges(request)
    response = web.Response(body=generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
