"""Prometheus metrics: the ones every gRPC service records, and the edge's.

Each process has one default registry; a service serves it on its metrics port, the edge on GET /metrics.
Names follow Prometheus conventions: an `ingot_` prefix, base units in the name (`_seconds`, `_bytes`),
`_total` on counters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from ingot.common.interceptors import Behavior, BehaviorInterceptor

log = logging.getLogger(__name__)

# Generation times on a CPU run from milliseconds (a cached short prompt) to minutes (a long story).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

RPC_REQUESTS = Counter("ingot_rpc_requests_total", "gRPC calls handled, by method and status code",
                       ["method", "code"])
RPC_DURATION = Histogram("ingot_rpc_duration_seconds", "time to handle a gRPC call (a stream: until it ends)",
                         ["method"], buckets=_LATENCY_BUCKETS)

HTTP_REQUESTS = Counter("ingot_http_requests_total", "HTTP requests answered by the edge, by route and status",
                        ["method", "route", "status"])
HTTP_DURATION = Histogram("ingot_http_request_duration_seconds", "time to answer an HTTP request (a stream: "
                          "until it ends)", ["method", "route"], buckets=_LATENCY_BUCKETS)
HTTP_IN_FLIGHT = Gauge("ingot_http_requests_in_flight", "HTTP requests the edge is answering now")
TIME_TO_FIRST_TOKEN = Histogram("ingot_time_to_first_token_seconds", "from the request to the first generated "
                                "token", ["model"], buckets=_LATENCY_BUCKETS)
TOKENS_PER_SECOND = Histogram("ingot_generation_tokens_per_second", "generated tokens per second of one "
                              "answer, after its first token", ["model"], buckets=_RATE_BUCKETS)
GENERATED_TOKENS = Counter("ingot_generated_tokens_total", "completion tokens generated", ["model"])
PROMPT_TOKENS = Counter("ingot_prompt_tokens_total", "prompt tokens processed", ["model"])
LOADED_MODELS = Gauge("ingot_loaded_models", "models the inference service has loaded")
ACTIVE_SEQUENCES = Gauge("ingot_inference_active_sequences", "sequences being generated now (the inference "
                         "queue's depth), by model", ["model"])
DOWNLOAD_BYTES = Counter("ingot_download_bytes_total", "model bytes fetched from a catalog host (resumed bytes are not fetched again)", ["model"])
GENERATE_RETRIES = Counter("ingot_generate_retries_total", "generations started again on another replica after "
                           "theirs went away before the first token")
LIMITED = Counter("ingot_http_requests_limited_total", "requests refused by a limit", ["limit"])


def _method(details: grpc.HandlerCallDetails) -> str:
    return details.method or "unknown"


def _code(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if code in (None, 0) else str(code)


def _record(method: str, code: str, seconds: float) -> None:
    RPC_DURATION.labels(method).observe(seconds)
    RPC_REQUESTS.labels(method, code).inc()
    # The access log: with the request id the JSON formatter adds, one line per call a request made.
    log.debug("%s %s in %.3f s", method, code, seconds)


def _unary(method: str, behavior: Behavior) -> Callable[..., Awaitable[Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        code = "OK"
        try:
            return await behavior(request, context)
        except BaseException:
            code = _code(context) if _code(context) != "OK" else "UNKNOWN"
            raise
        finally:
            _record(method, code, time.perf_counter() - start)

    return unary


def _stream(method: str, behavior: Behavior) -> Callable[..., AsyncIterator[Any]]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        start = time.perf_counter()
        code = "OK"
        try:
            async for item in behavior(request, context):
                yield item
        except BaseException as exc:
            code = "CANCELLED" if isinstance(exc, GeneratorExit) else _code(context)
            code = "UNKNOWN" if code == "OK" else code
            raise
        finally:
            _record(method, code, time.perf_counter() - start)

    return stream


class RpcMetricsInterceptor(BehaviorInterceptor):
    """Counts every call by method and final status code, and times it."""

    def wrap_unary(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Callable[..., Awaitable[Any]]:
        return _unary(_method(details), behavior)

    def wrap_stream(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Callable[..., AsyncIterator[Any]]:
        return _stream(_method(details), behavior)
