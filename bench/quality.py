"""How closely each engine follows SmolLM2's GGUF run in fp32, on the quality test's 1096 positions.

The reference is ingot.modelbuild.reference's: transformers runs the Q4_1 GGUF in fp32 over 20 prompts and
every position is a teacher-forced next-token prediction (cached under $INGOT_HOME/cache/gguf-reference;
computed when missing, about 20 s, needs the `build` extra). Each engine is fed the same token ids one at a
time, as a decode step, and its most likely next token is compared with the reference's:

- the default model, `SmolLM2-135M-Instruct-generic-cpu:1`, and its exact variant,
  `SmolLM2-135M-Instruct-exact-generic-cpu:1`, as `make setup` built them (each manifest's import accuracy is
  printed), through onnxruntime-genai's Generator with the inference service's thread settings;
- llama.cpp (PEERS=1): `llama-server` (bench/peers.py) on the same GGUF, 2 threads, one `/completion` per
  position with the prefix as token ids and its prompt cache on (so each request decodes one new token); its
  greedy token is its top-1. It returns no full distribution, so it has no KL.

Mean KL(reference ‖ engine) is over the reference's top 1024 tokens with the rest lumped as one outcome.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from bench.peers import LlamaServerProcess, llama_server
from bench.raw import RawModel

DEFAULT = Path("models/HuggingFaceTB/SmolLM2-135M-Instruct-generic-cpu-1")
EXACT = Path("models/HuggingFaceTB/SmolLM2-135M-Instruct-exact-generic-cpu-1")
LLAMA_ARGS = ["-t", "2", "-np", "1", "-c", "4096"]


class Generator(RawModel):
    """A model folder decoding the reference's ids one token per step, as the inference service decodes."""

    def __init__(self, folder: Path) -> None:
        from services.inference.models import CpuThreads
        from services.inference.settings import InferenceSettings

        super().__init__(folder, CpuThreads.for_host(0, InferenceSettings().spin_wait))

    def logits(self, ids: list[int]) -> np.ndarray:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(ids) + 1, do_sample=False)
        generator = self.og.Generator(self.model, params)
        rows = []
        for token in ids:
            generator.append_tokens([token])
            rows.append(np.array(generator.get_logits()[0, -1], dtype=np.float32))
        return np.stack(rows)


def llama_cpp_top1(binary: Path, gguf: Path, data: dict[str, np.ndarray]) -> tuple[int, int]:
    from ingot.modelbuild.reference import prompt_count

    agree = positions = 0
    with LlamaServerProcess(binary, gguf, LLAMA_ARGS) as server:
        for i in range(prompt_count(data)):
            ids, best = data[f"ids{i}"].tolist(), data[f"top_index{i}"][:, 0]
            for p in range(len(ids)):
                body = json.dumps({"prompt": ids[:p + 1], "n_predict": 1, "temperature": 0, "cache_prompt": True,
                                   "return_tokens": True}).encode()
                request = urllib.request.Request(f"{server.base_url}/completion", data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as response:
                    agree += int(json.loads(response.read())["tokens"][0] == best[p])
                positions += 1
    return agree, positions


def run(config) -> dict[str, Any]:
    from ingot.modelbuild.reference import agreement, reference
    from ingot.modelbuild.smollm2 import find_gguf

    home = Path(config.home)
    gguf = find_gguf()
    started = time.monotonic()
    data = reference(home)
    print(f"  fp32 reference ready in {time.monotonic() - started:.1f} s", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    for folder in (home / DEFAULT, home / EXACT):
        manifest = json.loads((folder / "inference_model.json").read_text())
        started = time.monotonic()
        result = agreement(data, Generator(folder).logits)
        name = manifest["Name"]
        rows[name] = {"arithmetic": arithmetic(manifest), "agree": result.agree, "positions": result.positions,
                      "top1": result.top1, "mean_kl": result.mean_kl, "seconds": round(time.monotonic() - started, 1)}
        print(f"  {name}: {result.agree}/{result.positions} in {rows[name]['seconds']} s", flush=True)
    if os.environ.get("PEERS") == "1":
        started = time.monotonic()
        agree, positions = llama_cpp_top1(llama_server(home), gguf, data)
        rows["llama.cpp llama-server"] = {"arithmetic": "int8 activations (ggml)", "agree": agree,
                                          "positions": positions, "top1": agree / positions, "mean_kl": None,
                                          "seconds": round(time.monotonic() - started, 1)}
    _print(rows)
    if os.environ.get("PEERS") != "1":
        print("  llama.cpp skipped: PEERS=1 measures llama.cpp's llama-server on the same GGUF (built once)")
    return {"reference": "SmolLM2 Q4_1 GGUF in fp32 (transformers), teacher-forced", "engines": rows}


def arithmetic(manifest: dict[str, Any]) -> str:
    """What the model folder computes with, from its manifest."""
    if "Import" in manifest:
        return f"{manifest['Import'].get('accuracy', 'fp32')} activations"
    return "int8 build (onnxruntime-genai builder)"


def _print(rows: dict[str, dict[str, Any]]) -> None:
    print(f"  {'engine':<46} {'arithmetic':<26} {'top-1 agreement':>22}   mean KL")
    for name, row in rows.items():
        top1 = f"{row['agree']}/{row['positions']} {row['top1']:7.2%}"
        kl = "—" if row["mean_kl"] is None else f"{row['mean_kl']:.5f}"
        print(f"  {name:<46} {row['arithmetic']:<26} {top1:>22}   {kl}")


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import main as bench_main

    return bench_main(["quality", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
