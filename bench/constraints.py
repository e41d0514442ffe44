"""What constrained decoding costs: tokens/s with and without a grammar on the same prompt, through the
raw onnxruntime-genai Generator in this process (no server), as ratios to the unconstrained run.

Cases, all greedy on one prompt:
- free: no constraint, exactly MAX_TOKENS tokens (end-of-sequence suppressed), the engine's ceiling;
- json_schema: a response format's schema, as the inference service sends it (compact layout), every
  token sampled under the grammar's mask;
- json_schema+ff: the same with fast-forward, where the grammar appends the tokens it forces in one step
  (the inference service's default when nothing needs the logits);
- tool_call+ff: tool_choice "required" over three functions, the Lark grammar the service builds.

Per case: decode tokens/s (tokens after the first over the time after the first; forced tokens count, as
they are output), the time to build the generator (llguidance compiles the grammar there) and the
prefill, and the tokens each answer took. A ratio above 1 means fast-forward produced tokens faster than
sampling does.
Medians over the rounds. `python -m bench.constraints [--home DIR] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from ingot.inference.v1 import inference_service_pb2 as pb
from services.inference.toolcalls import grammar, with_json_layout

FOLDER = Path("models/HuggingFaceTB/SmolLM2-135M-Instruct-generic-cpu-1")
MAX_TOKENS = 160
PROMPT = ("<|im_start|>user\nList the people in a small book club, with their name, age, email and favourite "
          "genre.<|im_end|>\n<|im_start|>assistant\n")
MEMBER = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 10, "maximum": 99},
    "email": {"type": "string", "format": "email", "maxLength": 30},
    "genre": {"enum": ["fantasy", "crime", "poetry", "history", "science"]}},
    "required": ["name", "age", "email", "genre"], "additionalProperties": False}
CLUB = {"type": "object", "properties": {"club": {"type": "string", "maxLength": 30},
                                         "members": {"type": "array", "items": MEMBER, "minItems": 4, "maxItems": 4}},
        "required": ["club", "members"], "additionalProperties": False}
FUNCTIONS = {"add_member": MEMBER, "remove_member": {"type": "object", "properties": {"name": {"type": "string"}},
                                                     "required": ["name"], "additionalProperties": False},
             "schedule": {"type": "object", "properties": {"date": {"type": "string", "format": "date"}},
                          "required": ["date"], "additionalProperties": False}}


def cases() -> dict[str, tuple[str, str, bool] | None]:
    tools = pb.Tools(functions=[pb.FunctionDefinition(name=name, parameters_json=json.dumps(schema))
                                for name, schema in FUNCTIONS.items()], choice=pb.TOOL_CHOICE_REQUIRED)
    schema = json.dumps(with_json_layout(CLUB))
    return {
        "free": None,
        "json_schema": ("json_schema", schema, False),
        "json_schema+ff": ("json_schema", schema, True),
        "tool_call+ff": ("lark_grammar", grammar(tools), True),
    }


def measure(og, model, prompt: list[int], guidance: tuple[str, str, bool] | None) -> dict[str, float]:
    started = time.perf_counter()
    params = og.GeneratorParams(model)
    if guidance is None:
        length = len(prompt) + MAX_TOKENS
        params.set_search_options(max_length=length, min_length=length, do_sample=False)
    else:
        kind, text, fast_forward = guidance
        # Room past the budget for a forced run, as the inference service gives it.
        params.set_search_options(max_length=len(prompt) + MAX_TOKENS + 256, do_sample=False)
        params.set_guidance(kind, text, fast_forward)
    generator = og.Generator(model, params)
    built = time.perf_counter()
    generator.append_tokens(prompt)
    generator.generate_next_token()
    first = time.perf_counter()
    while not generator.is_done() and generator.token_count() < len(prompt) + MAX_TOKENS:
        generator.generate_next_token()
    ended = time.perf_counter()
    tokens = generator.token_count() - len(prompt)
    return {"setup_ms": (built - started) * 1000, "prefill_ms": (first - built) * 1000, "tokens": tokens,
            "decode_tok_s": (tokens - 1) / (ended - first)}


def run(config: Any) -> dict[str, Any]:
    import onnxruntime_genai as og
    from tokenizers import Tokenizer

    folder = Path(config.home) / FOLDER
    model = og.Model(str(folder))
    prompt = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(PROMPT, add_special_tokens=False).ids
    rounds = max(1, int(getattr(config, "rounds", 5)))
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in cases()}
    measure(og, model, prompt, None)  # warm-up: the first run pays for allocations
    # Rounds interleave the cases, so drift on a shared machine touches each of them alike.
    for _ in range(rounds):
        for name, guidance in cases().items():
            samples[name].append(measure(og, model, prompt, guidance))
    medians = {name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
               for name, runs in samples.items()}
    free = medians["free"]["decode_tok_s"]
    print(f"{'case':<16}{'decode tok/s':>14}{'ratio':>8}{'tokens':>8}{'setup ms':>10}{'prefill ms':>12}")
    for name, row in medians.items():
        row["ratio"] = row["decode_tok_s"] / free
        print(f"{name:<16}{row['decode_tok_s']:>14.1f}{row['ratio']:>8.2f}{row['tokens']:>8.0f}"
              f"{row['setup_ms']:>10.1f}{row['prefill_ms']:>12.1f}")
    return {"model": str(folder), "prompt_tokens": len(prompt), "max_tokens": MAX_TOKENS, "rounds": rounds,
            "cases": medians}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.constraints", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("INGOT_HOME", "~/.ingot")).expanduser(),
                        help="ingot home with the built models (env INGOT_HOME)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case; medians are reported")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
