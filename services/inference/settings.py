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
    prompt_cache_entries: int = Field(8, ge=0, description="finished one-row generators kept so that a request sharing a long prompt prefix with one (the next turn of a conversation, a shared system prompt) prefills only the rest; 0: no prompt cache")
    prompt_cache_mb: int = Field(512, ge=0, description="KV cache memory the prompt cache may hold, in MB (a kept generator holds its whole KV cache); the least recently used entry goes first; 0: no prompt cache")
    prompt_cache_headroom_tokens: int = Field(1024, ge=0, description="the most room, in tokens, a generator that may be kept gets beyond its own request for the next turns of its conversation: its prompt's length, at least 256 (a conversation outgrows it only each time it doubles)")
    prompt_cache_settle: bool = Field(True, description="where a decoded token's KV differs from a prefilled one's (int8 activations), prefill each kept answer again once the engine has been idle for 0.25 s, so that the next turn of its conversation prefills only its question; costs one prefill of each answer")
    speculative_drafts: bool = Field(True, description="let a request running alone with a prompt of 64 tokens or more verify n-gram drafts from its prompt (same answers, faster where it copies); backed off per model when drafts did not pay")
    spin_wait: bool = Field(True, description="let onnxruntime's threads spin for work between the parallel "
                            "sections of a model step and stop the moment it ends (measured on 2 cores: one "
                            "stream 66 -> 94 tokens/s, 8 streams 127 -> 143); --no-spin-wait where the cores "
                            "are shared with work that cannot wait a few microseconds")
