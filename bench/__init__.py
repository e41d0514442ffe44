"""ingot's benchmarks: each measures a path through the running mesh against the raw engine in the same run.

`python -m bench` runs every benchmark in BENCHMARKS; `python -m bench NAME ...` only those named. A
benchmark is a module with `run(config) -> dict` that prints its own table and returns what goes into
bench/results/<name>-<time>.json.
"""

# Name → module. Add a benchmark by adding its module here.
BENCHMARKS = {
    "chat": "bench.chat",
    "embeddings": "bench.embeddings",
    "constraints": "bench.constraints",
    # Bounded: 4 streams for 1 minute; errors must be 0 and RSS flat after warm-up.
    "soak": "bench.soak",
    "gguf": "bench.gguf",
    # Top-1 agreement with SmolLM2's GGUF run in fp32, token by token: the default model, both imports, llama.cpp.
    "quality": "bench.quality",
    # A growing conversation and a shared ~1,000-token system prompt: ingot's prompt cache on and off.
    "conversation": "bench.conversation",
}
