from __future__ import annotations

from pydantic import Field

from ingot.common.grpcserver import ServiceSettings


# Logging, tracing, the metrics port, and how the server holds its port and ages connections come from
# the settings every service shares.
class TokenizerSettings(ServiceSettings):
    listen: str = Field("127.0.0.1:50051", description="address to serve gRPC on (port 0 picks a free one)")
    registry_address: str = Field("127.0.0.1:50052", description="the registry service, to resolve model names")
