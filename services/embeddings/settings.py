from __future__ import annotations

from pydantic import Field

from ingot.common.grpcserver import ServiceSettings


# Logging, tracing, the metrics port, and how the server holds its port and ages connections come from
# the settings every service shares.
class EmbeddingsSettings(ServiceSettings):
    listen: str = Field("127.0.0.1:50054", description="address to serve gRPC on (port 0 picks a free one)")
    registry_address: str = Field("127.0.0.1:50052", description="the registry service, to find model folders")
    max_batch_size: int = Field(64, ge=1, description="waiting inputs taken together and split into runs, at most")
    max_batch_tokens: int = Field(16384, ge=256,
                                  description="padded tokens (rows x longest row) in one onnxruntime run at most")
    run_overhead_tokens: int = Field(64, ge=0, description="what one onnxruntime run costs beyond its tokens, in "
                                     "tokens' worth of work: waiting inputs are split into runs to minimise padding "
                                     "plus this per run")
    max_queued_inputs: int = Field(8192, ge=1, description="inputs waiting for a run; beyond: RESOURCE_EXHAUSTED")
    max_inputs_per_request: int = Field(2048, ge=1, description="inputs one Embed call may carry")
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime threads per run (0: one per core)")
    spin_wait: bool = Field(False, description="let onnxruntime's idle threads spin for work: a little faster on "
                            "cores of its own, slower when the edge and other services share them")
