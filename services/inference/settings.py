from __future__ import annotations

from pydantic import Field

from ingot.common.grpcserver import ServiceSettings


# Logging, tracing, the metrics port, and how the server holds its port and ages connections come from
# the settings every service shares.
class InferenceSettings(ServiceSettings):
    listen: str = Field("127.0.0.1:50053", description="address to serve gRPC on (port 0 picks a free one)")
    registry_address: str = Field("127.0.0.1:50052", description="the registry service, to find model folders")
    max_active_sequences: int = Field(16, ge=1, description="sequences the engine steps at once")
    max_waiting_sequences: int = Field(64, ge=0, description="admitted sequences waiting for a slot; beyond: RESOURCE_EXHAUSTED")
    max_batch_size: int = Field(8, ge=1, description="sequences that may share one generator and step together")
    batch_window_ms: float = Field(5.0, ge=0, description="how long the engine waits after the latest request for more to share its batch; a lone request waits this long, a burst at most 4 times this")
    prefill_chunk_tokens: int = Field(256, ge=16, description="prompt tokens prefilled per engine step, so a long prompt never stalls other streams for long")
    default_ttl_seconds: int = Field(600, ge=0, description="idle seconds before a loaded model unloads (Foundry Local's default TTL); 0 keeps models loaded")
    memory_budget_mb: int = Field(0, ge=0, description="model files that may be loaded at once, in MB; a load beyond it unloads the least recently used idle model first (0: no budget)")
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime threads per model step on the CPU; 0: one per CPU this process may run on")
    spin_wait: bool = Field(False, description="let onnxruntime's idle threads spin for work: a little faster on "
                            "cores of its own, slower when the edge and other services share them")
