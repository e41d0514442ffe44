"""Chat generation through the whole mesh against the raw onnxruntime-genai Generator, in the same run.

- raw: the Generator loop in this process, no server: the engine's own ceiling for one stream.
- ingot: the same prompts as streamed chat completions over HTTP (a raw SSE client, so the client's own
  cost stays out of the figures), greedy, one distinct prompt per request (ingot has no prompt cache, but
  a fair comparison with servers that do needs distinct prompts).

Figures: time to first token (p50, p95), decode tokens/s of one stream, aggregate generated tokens/s and
request latency at 1, 4, 8 and 16 concurrent streams, each service's peak RSS, and what a loaded idle model
costs the inference service. Targets from issue 9 are checked and printed as met or not.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.mesh import Mesh
from bench.streams import MAX_TOKENS, Server, one, percentile, prompts, wave

MODEL = "SmolLM2-135M-Instruct-generic-cpu:1"
FOLDER = Path("models/HuggingFaceTB/SmolLM2-135M-Instruct-generic-cpu-1")
LEVELS = (1, 4, 8, 16)


class Raw:
    """The baseline: the model folder through onnxruntime-genai's Generator in this process."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime_genai as og
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        self.og = og
        self.model = og.Model(str(folder))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        template = (folder / "chat_template.jinja").read_text()
        self.template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template)

    def encode(self, text: str) -> list[int]:
        prompt = self.template.render(messages=[{"role": "user", "content": text}], add_generation_prompt=True)
        return self.tokenizer.encode(prompt, add_special_tokens=False).ids

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
    with Mesh(config.home) as mesh:
        ingot = Server(mesh.base_url, MODEL)
        idle_baseline = mesh.rss_mb("inference")
        httpx.get(f"{mesh.base_url}/openai/load/{MODEL}", timeout=120).raise_for_status()
        idle_loaded = mesh.rss_mb("inference")
        raw = Raw(folder)
        texts = prompts(rounds, offset=3)
        raw.stream(texts[0])
        wave(ingot, 1, 0)  # warm both paths before measuring
        raw_runs, ingot_runs = [], []
        for text in texts:
            raw_runs.append(raw.stream(text))
            ingot_runs.append(one(ingot, text))
        levels = [wave(ingot, streams, offset=7 * streams) for streams in LEVELS]
        peak = {name: round(mesh.rss_mb(name, "VmHWM"), 1) for name in mesh.pids}
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
    _print(one_, levels, peak, idle_baseline, idle_loaded, model_mb, targets)
    return {"one_stream": one_, "levels": levels, "peak_rss_mb": peak,
            "idle_model": {"baseline_mb": idle_baseline, "loaded_mb": idle_loaded, "files_mb": model_mb},
            "targets": targets, "max_tokens": MAX_TOKENS}


def _summary(raw_runs: list[dict], ingot_runs: list[dict]) -> dict[str, float]:
    raw_decode = statistics.median(r["decode"] for r in raw_runs)
    ingot_decode = statistics.median(r["decode"] for r in ingot_runs)
    return {
        "raw_decode_tps": raw_decode, "ingot_decode_tps": ingot_decode, "decode_ratio": ingot_decode / raw_decode,
        "raw_ttft_p50": statistics.median(r["ttft"] for r in raw_runs),
        "raw_ttft_p95": percentile([r["ttft"] for r in raw_runs], 0.95),
        "ingot_ttft_p50": statistics.median(r["ttft"] for r in ingot_runs),
        "ingot_ttft_p95": percentile([r["ttft"] for r in ingot_runs], 0.95),
    }


def _print(one, levels, peak, idle_baseline, idle_loaded, model_mb, targets) -> None:
    print(f"one stream ({MAX_TOKENS} tokens, greedy)   raw          ingot        ingot/raw")
    print(f"  decode tokens/s              {one['raw_decode_tps']:8.1f}     {one['ingot_decode_tps']:8.1f}     "
          f"{one['decode_ratio']:6.2f}")
    print(f"  time to first token p50      {one['raw_ttft_p50'] * 1000:6.1f} ms    {one['ingot_ttft_p50'] * 1000:6.1f} ms"
          f"    {(one['ingot_ttft_p50'] - one['raw_ttft_p50']) * 1000:+.1f} ms")
    print(f"  time to first token p95      {one['raw_ttft_p95'] * 1000:6.1f} ms    {one['ingot_ttft_p95'] * 1000:6.1f} ms")
    base = levels[0]["aggregate_tps"]
    print("concurrent streams   aggregate tokens/s   x one stream   latency p50   latency p95   TTFT p50")
    for level in levels:
        print(f"  {level['streams']:>4}               {level['aggregate_tps']:8.1f}             "
              f"{level['aggregate_tps'] / base:5.2f}        {level['latency_p50']:6.2f} s     "
              f"{level['latency_p95']:6.2f} s    {level['ttft_p50'] * 1000:6.0f} ms")
    print("peak RSS (MB): " + ", ".join(f"{name} {mb}" for name, mb in peak.items()))
    print(f"idle model: inference RSS {idle_baseline:.0f} MB empty, {idle_loaded:.0f} MB loaded "
          f"(+{idle_loaded - idle_baseline:.0f} MB for {model_mb:.0f} MB of files)")
    for name, met in targets.items():
        print(f"  [{'met' if met else 'NOT met'}] {name}")
