"""What every process shares to show what it is doing: JSON log lines carrying the request id, the
request id and trace context carried across gRPC, OpenTelemetry tracing, and a Prometheus port.

The request id lives in a context variable: the edge's middleware sets it from `x-request-id` (or makes
one), the client interceptor sends it as gRPC metadata on every call, and the server interceptor sets it
again in the called service, so every log line of one request carries the same id in every process.

Tracing follows the standard OTEL_* variables (read by the OpenTelemetry SDK itself): OTLP when
OTEL_EXPORTER_OTLP_ENDPOINT is set. `trace_file` adds a JSON-lines file of finished spans, which is how
the tests see one trace across processes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from pydantic import Field

from ingot.common.interceptors import Behavior, BehaviorInterceptor
from ingot.common.meshtls import MeshTlsSettings
from ingot.common.settings import SettingsBase

REQUEST_ID_METADATA = "x-request-id"
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Client-supplied ids end up in every log line: a bound keeps a hostile one from bloating them.
MAX_REQUEST_ID = 128


class TelemetrySettings(SettingsBase):
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field("info", description="logging level")
    trace_file: str = Field("", description="append finished trace spans to this file as JSON lines; empty: none")


class ServiceTelemetrySettings(TelemetrySettings, MeshTlsSettings):
    metrics_port: int = Field(0, ge=0, le=65535, description="port of the Prometheus /metrics endpoint; 0: none")
    # In a pod, Prometheus scrapes from another address: 0.0.0.0 there, loopback on a shared host.
    metrics_host: str = Field("127.0.0.1", min_length=1, description="interface the Prometheus /metrics endpoint binds")
    # Kubernetes waits terminationGracePeriodSeconds after SIGTERM; streams in flight may use all of it.
    shutdown_grace: float = Field(5.0, ge=0, description="seconds calls in flight may take to finish after SIGTERM "
                                  "before they are cut")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str | None:
    """A client's id when it is printable and short; None (make a new one) otherwise."""
    if not value or len(value) > MAX_REQUEST_ID or not value.isprintable() or not value.isascii():
        return None
    return value


# ---- logs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, process, logger, message, request id, trace id."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "process": self.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logs(process: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


# ---- tracing


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line; several processes may share the file (O_APPEND)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def configure_tracing(process: str, trace_file: str = "") -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": f"ingot-{process}"}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        # Imported only when asked for: the OTLP exporter pulls in its own gRPC/HTTP client stacks.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if trace_file:
        # Simple (synchronous) processing: a span is on disk as soon as it ends, so a test can read it.
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(trace_file)))
    trace.set_tracer_provider(provider)


def configure(process: str, config: TelemetrySettings) -> None:
    """Logs, tracing and (for a service) the Prometheus port of this process, from its settings."""
    configure_logs(process, config.log_level)
    configure_tracing(process, config.trace_file)
    port = getattr(config, "metrics_port", 0)
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=getattr(config, "metrics_host", "127.0.0.1"))


# ---- gRPC: the request id across the mesh


def _with_request_id(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    request_id = REQUEST_ID.get()
    if request_id is None:
        return details
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    if REQUEST_ID_METADATA not in metadata:
        metadata.add(REQUEST_ID_METADATA, request_id)
    return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                      details.wait_for_ready)


class _RequestIdUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[override]
        return await continuation(_with_request_id(client_call_details), request)


class _RequestIdUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[override]
        return await continuation(_with_request_id(client_call_details), request)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    # Tracing first, so the request-id interceptor's call is inside the client span.
    return [*aio_client_interceptors(), _RequestIdUnaryUnary(), _RequestIdUnaryStream()]


def _request_id_of(context: grpc.aio.ServicerContext) -> str:
    request_id = next((clean_request_id(value) for key, value in context.invocation_metadata() or ()
                       if key == REQUEST_ID_METADATA and isinstance(value, str)), None) or new_request_id()
    # The server span (the tracing interceptor runs outside this one) names the request too.
    trace.get_current_span().set_attribute("ingot.request_id", request_id)
    return request_id


def _unary(behavior: Behavior) -> Callable[..., Awaitable[Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = REQUEST_ID.set(_request_id_of(context))
        try:
            return await behavior(request, context)
        finally:
            REQUEST_ID.reset(token)

    return unary


def _stream(behavior: Behavior) -> Callable[..., AsyncIterator[Any]]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        REQUEST_ID.set(_request_id_of(context))
        async for item in behavior(request, context):
            yield item

    return stream


class RequestIdInterceptor(BehaviorInterceptor):
    """Sets REQUEST_ID for the handler from the caller's `x-request-id` metadata."""

    def wrap_unary(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Callable[..., Awaitable[Any]]:
        return _unary(behavior)

    def wrap_stream(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Callable[..., AsyncIterator[Any]]:
        return _stream(behavior)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    from ingot.common.metrics import RpcMetricsInterceptor

    return [aio_server_interceptor(), RequestIdInterceptor(), RpcMetricsInterceptor()]
