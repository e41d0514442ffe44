"""The edge's settings: where it listens and where the services it calls are."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ingot.common.settings import SettingsBase


class EdgeSettings(SettingsBase):
    host: str = Field("127.0.0.1", description="interface the HTTP server binds")
    port: int = Field(5272, ge=0, le=65535, description="HTTP port (Foundry Local's usual one; 0 picks a free port)")
    tokenizer_address: str = Field("127.0.0.1:50051", min_length=1, description="gRPC target of the tokenizer service")
    registry_address: str = Field("127.0.0.1:50052", min_length=1, description="gRPC target of the registry service")
    inference_address: str = Field("127.0.0.1:50053", min_length=1, description="gRPC target of the inference service")
    # Empty until the embeddings service exists: /ready then leaves it out.
    embeddings_address: str = Field("", description="gRPC target of the embeddings service; empty: not deployed")
    call_timeout: float = Field(10.0, gt=0, description="deadline in seconds of each unary gRPC call")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field("info", description="log level")
