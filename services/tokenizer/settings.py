from __future__ import annotations

from pydantic import Field

from ingot.common.telemetry import ServiceTelemetrySettings


# Logging, tracing and the metrics port come from the telemetry settings every service shares.
class TokenizerSettings(ServiceTelemetrySettings):
    listen: str = Field("127.0.0.1:50051", description="address to serve gRPC on (port 0 picks a free one)")
    registry_address: str = Field("127.0.0.1:50052", description="the registry service, to resolve model names")
