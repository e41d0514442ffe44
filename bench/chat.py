"""Chat generation through the whole mesh against the raw onnxruntime-genai Generator, in the same run.

- raw: the Generator loop in this process, no server: the engine's own ceiling for one stream.
- ingot: the same prompts as streamed chat completions over HTTP (a raw SSE client, so the client's own
  cost stays out of the figures), greedy, one distinct prompt per request (they share too
  little for any prompt cache, so every request is a full prefill: `bench conversation` measures reuse).
- llama.cpp (PEERS=1): llama.cpp's `llama-server` on the GGUF file the default model is built from, 16 slots
  with continuous batching and 2 threads, measured after ingot with the same prompts and client, its prompt
  cache off. The binary comes from bench/peers.py (built once and cached under $INGOT_HOME/peers/).

Figures: time to first token (p50, p95), decode tokens/s of one stream, aggregate generated tokens/s and
request latency at 1, 4, 8 and 16 concurrent streams, each service's peak RSS, and what a loaded idle model
costs the inference service. Targets from issues 9 and 21 are checked and printed as met or not.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

from bench.mesh import Mesh
from bench.peers import LlamaServerProcess, llama_server
from bench.raw import RawModel
from bench.streams import MAX_TOKENS, Server, one, one_stream, prompts, wave

MODEL = "SmolLM2-135M-Instruct-generic-cpu:1"
FOLDER = Path("models/HuggingFaceTB/SmolLM2-135M-Instruct-generic-cpu-1")
LEVELS = (1, 4, 8, 16)
# The waves' prompts start past the one-stream texts (offset 3, one per round), so that no wave repeats a
# prompt the prompt cache has just kept.
WAVE_OFFSET = 40
# 16 slots so that 16 concurrent streams are batched, not queued; 1024 tokens of context each.
LLAMA_ARGS = ["-np", "16", "-c", "16384", "--cont-batching", "-t", "2", "--jinja"]


class Raw(RawModel):
    """The baseline: the model folder through onnxruntime-genai's Generator in this process, with the thread
    settings the inference service uses by default (one thread per CPU, spinning within a step)."""

    def __init__(self, folder: Path) -> None:
        from services.inference.models import CpuThreads
        from services.inference.settings import InferenceSettings

        super().__init__(folder, CpuThreads.for_host(0, InferenceSettings().spin_wait))

    def stream(self, text: str) -> dict[str, float]:
        ids = self.encode(text)
        started = time.perf_counter()
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(ids) + MAX_TOKENS, do_sample=False)
        generator = self.og.Generator(self.model, params)
        generator.append_tokens(ids)
        generator.generate_next_token()
        first = time.perf_counter()
        tokens = 1
        while not generator.is_done():
            generator.generate_next_token()
            tokens += 1
        ended = time.perf_counter()
        return {"ttft": first - started, "tokens": tokens, "decode": (tokens - 1) / (ended - first)}


def run(config) -> dict[str, Any]:
    folder = config.home / FOLDER
    rounds = max(config.rounds, 3)
    texts = prompts(rounds, offset=3)
    # Built (once) before anything is measured, so that a failed build costs no measurements.
    binary = llama_server(config.home) if os.environ.get("PEERS") == "1" else None
    # Its prompts share nothing to reuse, and settling answers in the pauses would take the CPU from the raw
    # baseline measured in those same pauses.
    with Mesh(config.home, {"INGOT_PROMPT_CACHE_SETTLE": "false"}) as mesh:
        ingot = Server(mesh.base_url, MODEL)
        idle_baseline = mesh.rss_mb("inference")
        httpx.get(f"{mesh.base_url}/openai/load/{MODEL}", timeout=120).raise_for_status()
        idle_loaded = mesh.rss_mb("inference")
        raw = Raw(folder)
        raw.stream(texts[0])
        wave(ingot, 1, 0)  # warm both paths before measuring
        raw_runs, ingot_runs = [], []
        for text in texts:
            raw_runs.append(raw.stream(text))
            ingot_runs.append(one(ingot, text))
        levels = [wave(ingot, streams, offset=WAVE_OFFSET + 7 * streams) for streams in LEVELS]
        peak = {name: round(mesh.rss_mb(name, "VmHWM"), 1) for name in mesh.pids}
    llama = _llama_cpp(binary, texts) if binary else None
    model_mb = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    one_ = _summary(raw_runs, ingot_runs)
    by_level = {level["streams"]: level for level in levels}
    targets = {
        "one stream decode >= 0.95 x raw": one_["decode_ratio"] >= 0.95,
        "one stream TTFT <= raw + 10 ms": one_["ingot_ttft_p50"] <= one_["raw_ttft_p50"] + 0.010,
        "8 streams aggregate >= 2.5 x one stream": by_level[8]["aggregate_tps"] >= 2.5 * by_level[1]["aggregate_tps"],
        "8 streams p95 latency <= 2 x median": by_level[8]["latency_p95"] <= 2 * by_level[8]["latency_p50"],
        "idle model RSS <= 2 x its files": idle_loaded - idle_baseline <= 2 * model_mb,
    }
    if llama:
        ratios = {"one_stream_decode": one_["ingot_decode_tps"] / llama["one_stream"]["decode_tps"]}
        for streams, level in zip(LEVELS, llama["levels"]):
            ratios[f"aggregate_{streams}"] = by_level[streams]["aggregate_tps"] / level["aggregate_tps"]
        llama["ratios"] = ratios
        targets["one stream decode >= 1.0 x llama.cpp"] = llama["ratios"]["one_stream_decode"] >= 1.0
        targets["8 streams aggregate >= 1.5 x llama.cpp"] = llama["ratios"]["aggregate_8"] >= 1.5
    _print(one_, levels, llama, peak, idle_baseline, idle_loaded, model_mb, targets)
    return {"one_stream": one_, "levels": levels, "llama_cpp": llama, "peak_rss_mb": peak,
            "idle_model": {"baseline_mb": idle_baseline, "loaded_mb": idle_loaded, "files_mb": model_mb},
            "targets": targets, "max_tokens": MAX_TOKENS}


def _llama_cpp(binary: Path, texts: list[str]) -> dict[str, Any]:
    """llama-server on the default model's GGUF: one stream over `texts`, then the concurrency levels."""
    from ingot.modelbuild.smollm2 import find_gguf

    gguf = find_gguf()
    print(f"  measuring llama.cpp: {binary} -m {gguf.name} {' '.join(LLAMA_ARGS)}", flush=True)
    with LlamaServerProcess(binary, gguf, LLAMA_ARGS) as process:
        server = Server(process.base_url, gguf.stem, {"cache_prompt": False})
        wave(server, 1, 0)  # warm-up, as for ingot
        runs = [one(server, text) for text in texts]
        levels = [wave(server, streams, offset=WAVE_OFFSET + 7 * streams) for streams in LEVELS]
    return {"binary": str(binary), "gguf": str(gguf), "args": LLAMA_ARGS, "one_stream": one_stream(runs),
            "levels": levels}


def _summary(raw_runs: list[dict], ingot_runs: list[dict]) -> dict[str, float]:
    raw, ingot = one_stream(raw_runs), one_stream(ingot_runs)
    return {
        "raw_decode_tps": raw["decode_tps"], "ingot_decode_tps": ingot["decode_tps"],
        "decode_ratio": ingot["decode_tps"] / raw["decode_tps"],
        "raw_ttft_p50": raw["ttft_p50"], "raw_ttft_p95": raw["ttft_p95"],
        "ingot_ttft_p50": ingot["ttft_p50"], "ingot_ttft_p95": ingot["ttft_p95"],
    }


def _print(one_, levels, llama, peak, idle_baseline, idle_loaded, model_mb, targets) -> None:
    def row(label: str, *cells: str, width: int = 32) -> str:
        return f"{label:<{width}}" + "".join(f"{cell:>16}" for cell in cells)

    def ms(seconds: float, sign: str = "") -> str:
        return f"{seconds * 1000:{sign}.1f} ms"

    table = [row(f"one stream ({MAX_TOKENS} tokens, greedy)", "raw", "ingot", "ingot/raw"),
             row("  decode tokens/s", f"{one_['raw_decode_tps']:.1f}", f"{one_['ingot_decode_tps']:.1f}",
                 f"{one_['decode_ratio']:.2f}"),
             row("  time to first token p50", ms(one_["raw_ttft_p50"]), ms(one_["ingot_ttft_p50"]),
                 ms(one_["ingot_ttft_p50"] - one_["raw_ttft_p50"], "+")),
             row("  time to first token p95", ms(one_["raw_ttft_p95"]), ms(one_["ingot_ttft_p95"]), "")]
    if llama:
        peer = llama["one_stream"]
        table[0] += row("", "llama.cpp", "ingot/llama.cpp", width=0)
        table[1] += row("", f"{peer['decode_tps']:.1f}", f"{one_['ingot_decode_tps'] / peer['decode_tps']:.2f}",
                        width=0)
        table[2] += row("", ms(peer["ttft_p50"]), ms(one_["ingot_ttft_p50"] - peer["ttft_p50"], "+"), width=0)
        table[3] += row("", ms(peer["ttft_p95"]), width=0)
    table.append(row("concurrent streams   server", "aggregate tok/s", "x one stream", "latency p50", "latency p95",
                     "TTFT p50"))
    servers = [("ingot", levels)] + ([("llama.cpp", llama["levels"])] if llama else [])
    for i, streams in enumerate(LEVELS):
        for name, figures in servers:
            level, scaling = figures[i], figures[i]["aggregate_tps"] / figures[0]["aggregate_tps"]
            table.append(row(f"  {streams if name == 'ingot' else '':>4}               {name}",
                             f"{level['aggregate_tps']:.1f}", f"{scaling:.2f}",
                             f"{level['latency_p50']:.2f} s", f"{level['latency_p95']:.2f} s",
                             f"{level['ttft_p50'] * 1000:.0f} ms"))
    if llama:
        table.append(f"  ingot/llama.cpp aggregate tokens/s: {llama['ratios']['aggregate_1']:.2f} at 1 stream, "
                     f"{llama['ratios']['aggregate_8']:.2f} at 8 streams")
    print("\n".join(line.rstrip() for line in table))
    print("peak RSS (MB): " + ", ".join(f"{name} {mb}" for name, mb in peak.items()))
    print(f"idle model: inference RSS {idle_baseline:.0f} MB empty, {idle_loaded:.0f} MB loaded "
          f"(+{idle_loaded - idle_baseline:.0f} MB for {model_mb:.0f} MB of files)")
    for name, met in targets.items():
        print(f"  [{'met' if met else 'NOT met'}] {name}")
    if not llama:
        print("  llama.cpp skipped: PEERS=1 measures llama.cpp's llama-server on the same GGUF (built once)")
