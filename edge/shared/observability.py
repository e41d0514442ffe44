"""What the edge shows about itself: the request id, one trace per request, and Prometheus metrics (served by
edge/ops/metrics.py).

`request_id_middleware` takes the id from `x-request-id` or `x-ms-client-request-id` (Azure's), or makes
one; it is returned in both headers and travels to every service as gRPC metadata (see
ingot.common.telemetry). `metrics_middleware` counts and times every request by route pattern (never the
raw path, which would make one series per model name). `observe` wraps a generation's messages to record
time to first token, tokens per second and the `gen_ai.*` span attributes.
"""

from __future__ import annotations

import contextvars
import time
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from opentelemetry import trace

from edge.mesh.messages import Tagged
from ingot.common import metrics
from ingot.common.telemetry import REQUEST_ID, clean_request_id, new_request_id

REQUEST_ID_HEADERS = ("x-request-id", "x-ms-client-request-id")
REQUEST_ID_KEY = web.RequestKey("request_id", str)
# When the request arrived, for the time to first token; and the model it asked for, for the metrics' label.
_STARTED: contextvars.ContextVar[float | None] = contextvars.ContextVar("started", default=None)
_MODEL: contextvars.ContextVar[str] = contextvars.ContextVar("model", default="")
# Stats that mustn't scrape themselves into their own counts.
_UNCOUNTED = frozenset({"/metrics"})

@web.middleware
async def request_id_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    request_id = next((clean for name in REQUEST_ID_HEADERS
                       if (clean := clean_request_id(request.headers.get(name))) is not None), None)
    request_id = request_id or new_request_id()
    REQUEST_ID.set(request_id)
    request[REQUEST_ID_KEY] = request_id
    _STARTED.set(time.perf_counter())
    trace.get_current_span().set_attribute("ingot.request_id", request_id)
    return await handler(request)


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: a stream's headers go out before its handler returns, so they are set here."""
    request_id = request.get(REQUEST_ID_KEY)
    if request_id is not None:
        for name in REQUEST_ID_HEADERS:
            response.headers.setdefault(name, request_id)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    route = _route(request)
    if route in _UNCOUNTED:
        return await handler(request)
    start = time.perf_counter()
    status = 500
    metrics.HTTP_IN_FLIGHT.inc()
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except BaseException:
        # The client left (aiohttp cancelled the handler) or the error middleware let it through.
        status = 499
        raise
    finally:
        metrics.HTTP_IN_FLIGHT.dec()
        metrics.HTTP_DURATION.labels(request.method, route).observe(time.perf_counter() - start)
        metrics.HTTP_REQUESTS.labels(request.method, route, str(status)).inc()


def note_model(name: str) -> None:
    """The model a request asked for: the label of its generation metrics and a span attribute."""
    _MODEL.set(name)
    trace.get_current_span().set_attribute("gen_ai.request.model", name)


async def observe(messages: AsyncIterator[Tagged]) -> AsyncIterator[Tagged]:
    """`messages` unchanged, recording time to first token, tokens per second and token counts."""
    model = _MODEL.get() or "unknown"
    span = trace.get_current_span()
    started = _STARTED.get() or time.perf_counter()
    first: float | None = None
    counted = 0
    prompt = completion = 0
    try:
        async for position, message in messages:
            if first is None and message.token_ids:
                first = time.perf_counter()
                metrics.TIME_TO_FIRST_TOKEN.labels(model).observe(first - started)
                span.set_attribute("gen_ai.server.time_to_first_token", first - started)
            counted += len(message.token_ids)
            if message.HasField("usage"):
                prompt += message.usage.prompt_tokens
                completion += message.usage.completion_tokens
            yield position, message
    finally:
        generated = completion or counted
        if first is not None:
            elapsed = time.perf_counter() - first
            if generated > 1 and elapsed > 0:
                metrics.TOKENS_PER_SECOND.labels(model).observe((generated - 1) / elapsed)
        metrics.GENERATED_TOKENS.labels(model).inc(generated)
        metrics.PROMPT_TOKENS.labels(model).inc(prompt)
        span.set_attribute("gen_ai.usage.output_tokens", generated)
        if prompt:
            span.set_attribute("gen_ai.usage.input_tokens", prompt)


def tracing_middleware() -> Callable[..., Any]:
    """OpenTelemetry's aiohttp server middleware, outermost, so every other middleware runs in its span.

    The instrumentor's module state (excluded URLs, meters) is set by `instrument()`, which also replaces
    web.Application for every later app (the Azure sub-application would trace twice); so: instrument for
    that state, put web.Application back, and add the middleware to the root application only.
    """
    from opentelemetry.instrumentation import aiohttp_server

    global _instrumented
    if not _instrumented:
        instrumentor = aiohttp_server.AioHttpServerInstrumentor()
        with warnings.catch_warnings():
            # Its Application subclass, which aiohttp discourages and which is put back at once.
            warnings.simplefilter("ignore", DeprecationWarning)
            instrumentor.instrument()
        instrumentor.uninstrument()
        _instrumented = True
    return aiohttp_server.create_aiohttp_middleware()


_instrumented = False
