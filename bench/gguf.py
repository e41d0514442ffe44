"""The GGUF imports against the int8 build (and llama.cpp's server with PEERS=1), on SmolLM2's Q4_1 file.

Engines measured in this process, one stream, greedy, interleaved round by round so that a noisy machine
slows every engine alike:

- import: the default model, `SmolLM2-135M-Instruct-generic-cpu:1`, the GGUF's blocks with int8 activations
  (llama.cpp's arithmetic);
- import-fp32: `SmolLM2-135M-Instruct-exact-generic-cpu:1`, the same file with fp32 activations;
- int8: the variant `SmolLM2-135M-Instruct-int8-generic-cpu:1` (transformers + the onnxruntime-genai builder),
  built on first use (about a minute, needs torch);
- llama.cpp (PEERS=1): `llama-server` (bench/peers.py: INGOT_LLAMA_SERVER, else on PATH, else built once into
  $INGOT_HOME/peers/) on the same GGUF with 2 threads, its own timings from `/completion`, prompt cache off.

Prefill is timed on a ~250-token prompt, decode over 128 forced tokens (EOS ignored). Ratios are import over
each other engine.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.peers import LlamaServerProcess, llama_server
from bench.raw import RawModel

DEFAULT = Path("models/HuggingFaceTB/SmolLM2-135M-Instruct-generic-cpu-1")
EXACT = Path("models/HuggingFaceTB/SmolLM2-135M-Instruct-exact-generic-cpu-1")
DECODE_TOKENS = 128
TOPICS = ("a lighthouse keeper", "a clockmaker", "a desert caravan", "a deep-sea diver", "a mountain village",
          "a library at night", "a river barge", "an orchard in autumn", "a glass blower", "a lost kite")
FILLER = ("Describe the place, the people, the weather, the sounds and the smells in careful detail, and explain "
          "how the day begins, what work is done before noon, what is eaten, who visits in the afternoon and "
          "what stories are told when the lamps are lit. ")


def prefill_text(i: int) -> str:
    return f"Write about {TOPICS[i % len(TOPICS)]}. " + FILLER * 4


def decode_text(i: int) -> str:
    return f"Write a long story about {TOPICS[i % len(TOPICS)]} who learns to paint."


class Engine(RawModel):
    """A model folder through onnxruntime-genai's Generator, as the inference service drives it."""

    def __init__(self, name: str, folder: Path) -> None:
        super().__init__(folder)
        self.name = name

    def measure(self, round_index: int) -> dict[str, float]:
        ids = self.encode(prefill_text(round_index))
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(ids) + 1, do_sample=False)
        generator = self.og.Generator(self.model, params)
        started = time.perf_counter()
        generator.append_tokens(ids)
        prefill = len(ids) / (time.perf_counter() - started)
        del generator

        ids = self.encode(decode_text(round_index))
        total = len(ids) + DECODE_TOKENS
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=total, min_length=total, do_sample=False)
        generator = self.og.Generator(self.model, params)
        generator.append_tokens(ids)
        generator.generate_next_token()
        started = time.perf_counter()
        steps = 0
        while not generator.is_done():
            generator.generate_next_token()
            steps += 1
        return {"prefill": prefill, "decode": steps / (time.perf_counter() - started), "prompt_tokens": len(ids)}


class LlamaServer:
    """llama.cpp's `llama-server` on the GGUF; its own timings, prompt cache off."""

    def __init__(self, binary: Path, gguf: Path) -> None:
        self.name = "llama.cpp"
        self.server = LlamaServerProcess(binary, gguf, ["-t", "2", "-np", "1", "-c", "4096", "--jinja"])
        self.port = self.server.port

    def _complete(self, text: str, n_predict: int) -> dict[str, Any]:
        prompt = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
        body = json.dumps({"prompt": prompt, "n_predict": n_predict, "temperature": 0, "cache_prompt": False,
                           "ignore_eos": True}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/completion", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())["timings"]

    def measure(self, round_index: int) -> dict[str, float]:
        prefill = self._complete(prefill_text(round_index), 1)["prompt_per_second"]
        decode = self._complete(decode_text(round_index), DECODE_TOKENS)["predicted_per_second"]
        return {"prefill": prefill, "decode": decode}

    def close(self) -> None:
        self.server.close()


def _ensure_int8(home: Path) -> Path:
    from ingot.modelbuild.smollm2 import build_smollm2_int8

    return build_smollm2_int8(home / "models", log=lambda message: print(f"  {message}", flush=True))


def run(config) -> dict[str, Any]:
    from ingot.modelbuild.smollm2 import find_gguf

    home, rounds = Path(config.home), max(int(config.rounds), 3)
    default = home / DEFAULT
    manifest = json.loads((default / "inference_model.json").read_text())
    if "Import" not in manifest:
        raise RuntimeError(f"{default} is not the GGUF import: run `make setup` on this branch")
    gguf = find_gguf()
    engines: list[Any] = []
    try:
        engines = [Engine("import", default), Engine("import-fp32", home / EXACT), Engine("int8", _ensure_int8(home))]
        if os.environ.get("PEERS") == "1":
            engines.append(LlamaServer(llama_server(home), gguf))
        for engine in engines:
            engine.measure(rounds)  # warm-up round with a prompt the measured rounds do not use
        runs: dict[str, list[dict[str, float]]] = {engine.name: [] for engine in engines}
        for i in range(rounds):
            for engine in engines:
                runs[engine.name].append(engine.measure(i))
    finally:
        for engine in engines:
            if isinstance(engine, LlamaServer):
                engine.close()
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in ("prefill", "decode")}
               for name, rs in runs.items()}
    ratios = {f"import/{name}": {key: medians["import"][key] / value for key, value in m.items()}
              for name, m in medians.items() if name != "import"}
    _print(medians, ratios, rounds)
    return {"medians_tokens_per_s": medians, "ratios": ratios, "rounds": rounds, "decode_tokens": DECODE_TOKENS,
            "runs": runs}


def _print(medians: dict, ratios: dict, rounds: int) -> None:
    print(f"one stream, greedy, medians of {rounds} rounds   prefill tok/s   decode tok/s")
    for name, m in medians.items():
        print(f"  {name:<38}  {m['prefill']:10.0f}   {m['decode']:12.1f}")
    for name, r in ratios.items():
        print(f"  {name:<38}  {r['prefill']:9.2f}x   {r['decode']:11.2f}x")


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import main as bench_main

    return bench_main(["gguf", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
