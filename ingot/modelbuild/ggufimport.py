"""Bring your own GGUF: turn a llama.cpp model file into an onnxruntime-genai model in the cache.

    python -m ingot.modelbuild.ggufimport FILE.gguf [--name NAME] [--alias A] [--accuracy fp32|int8] [--home DIR]

The decoder (ggufgraph), tokenizer files (ggufvocab), `genai_config.json` and the manifest are written into
a staging folder, the model is run for one step with onnxruntime, and only then is the folder renamed into
`models/<publisher>/<name>/` (ingot.common.modelcache), so a failed import leaves nothing behind. It needs
NumPy, `gguf`, `onnx`, `onnxruntime` and `tokenizers`, no torch: the registry can run it. `--progress-json`
prints one JSON object per line (`{"progress": 0.42, "message": ...}`, then `{"done": {...}}` or
`{"error": {...}}`), which is how the registry follows an import it runs as a child process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingot.common.modelcache import model_folder_name
from ingot.modelbuild.staging import locked_build, write_manifest
from ingot.modelbuild.ggufgraph import Accuracy, write_decoder
from ingot.modelbuild.ggufmodel import DecoderSpec, GGUFImportError, GGUFModel
from ingot.modelbuild.ggufvocab import TokenizerFiles, tokenizer_files, write_json

# Part of every BuildKey: change it whenever the importer changes what it writes, so imports redo.
IMPORTER_VERSION = "gguf-import/1"
DEFAULT_PUBLISHER = "imported"
DEFAULT_MAX_OUTPUT_TOKENS = 2048
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(:[0-9]{1,9})?$")

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ImportResult:
    name: str
    path: Path
    already_imported: bool
    manifest: dict[str, Any]


def default_name(gguf: Path) -> str:
    """`<file stem>-generic-cpu:1`, Foundry Local's spelling for a CPU build, from any file name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(gguf).stem).strip("-.") or "model"
    return f"{stem[:100]}-generic-cpu:1"


class InvalidName(GGUFImportError):
    pass


def check_name(name: str) -> str:
    """A model name the cache can hold, with ":1" added when it names no version."""
    if not _NAME.match(name):
        raise InvalidName(f"{name!r} is not a valid model name: use letters, digits, '.', '_' and '-', "
                              "optionally followed by ':VERSION'")
    return name if ":" in name else f"{name}:1"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def build_key(digest: str, accuracy: str, manifest_extra: dict[str, Any]) -> str:
    import onnxruntime

    key = hashlib.sha256()
    for part in (IMPORTER_VERSION, digest, accuracy, onnxruntime.__version__,
                 json.dumps(manifest_extra, sort_keys=True)):
        key.update(part.encode())
        key.update(b"\0")
    return key.hexdigest()


def import_gguf(gguf: Path, models_root: Path, *, name: str | None = None, alias: str = "",
                publisher: str = DEFAULT_PUBLISHER, accuracy: str = Accuracy.FP32, force: bool = False,
                manifest_extra: dict[str, Any] | None = None, progress: Progress | None = None) -> ImportResult:
    """Import `gguf` into `models_root/<publisher>/<folder of name>`; returns at once when it is up to date."""
    report = progress or (lambda fraction, message: None)
    gguf = Path(gguf).expanduser().absolute()
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf} does not exist or is not a file")
    name = check_name(name or default_name(gguf))
    Accuracy.level(accuracy, 4)
    extra = dict(manifest_extra or {})
    models_root = Path(models_root)
    folder = model_folder_name(name)
    final = models_root / publisher / folder

    # Everything that can refuse the file happens before the first progress report, so a caller streaming
    # progress can still answer a refusal with a proper error.
    model = GGUFModel(gguf)
    spec = model.spec
    tokenizer = tokenizer_files(model, context_length=spec.context_length)
    report(0.0, f"{gguf.name}: {spec.architecture}, {spec.layers} layers, tensor types "
                f"{', '.join(f'{k}×{v}' for k, v in sorted(model.tensor_types().items()))}")
    digest = file_digest(gguf)
    key = build_key(digest, accuracy, {"alias": alias, **extra})
    with locked_build(models_root, publisher, folder, key, force=force) as build:
        if build.up_to_date is not None:
            report(1.0, f"{name} is up to date")
            return ImportResult(name, final, True, build.up_to_date)
        started = time.monotonic()
        with build.staging() as staging:
            def on_layer(message: str) -> None:
                done, _, total = message.removeprefix("layer ").partition("/")
                if total.isdigit():
                    report(0.05 + 0.85 * int(done) / int(total), f"converting {message}")

            write_decoder(model, staging, accuracy=accuracy, log=on_layer)
            _write_tokenizer(staging, tokenizer)
            write_json(staging / "genai_config.json", genai_config(spec, tokenizer))
            report(0.92, "checking that onnxruntime runs the model")
            smoke_test(staging, spec)
            manifest = _manifest(name, alias, publisher, spec, model, gguf, digest, key, accuracy, tokenizer, extra)
            for path in staging.iterdir():
                path.chmod(0o644)  # the data file is written 0600 by default; services may run as another user
            write_manifest(staging, manifest)
        report(1.0, f"{name} imported in {time.monotonic() - started:.1f} s")
    return ImportResult(name, final, False, manifest)


def genai_config(spec: DecoderSpec, tokenizer: TokenizerFiles) -> dict[str, Any]:
    """onnxruntime-genai's config, shaped as its builder writes it for a CPU decoder."""
    eos = tokenizer.eos_token_ids
    return {
        "model": {
            "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos[0],
            "context_length": spec.context_length,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx",
                "head_size": spec.head_dim,
                "hidden_size": spec.hidden,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
                "num_attention_heads": spec.heads,
                "num_hidden_layers": spec.layers,
                "num_key_value_heads": spec.kv_heads,
            },
            "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0],
            "type": spec.architecture,
            "vocab_size": spec.vocab_size,
        },
        "search": {
            "diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
            "max_length": spec.context_length, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
            "num_return_sequences": 1, "past_present_share_buffer": True, "repetition_penalty": 1.0,
            "temperature": 1.0, "top_k": 50, "top_p": 1.0,
        },
    }


def smoke_test(folder: Path, spec: DecoderSpec) -> None:
    """One forward step through onnxruntime: a model that would not load or run is never installed."""
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    feed = {"input_ids": np.array([[0, 1]], dtype=np.int64), "attention_mask": np.ones((1, 2), dtype=np.int64)}
    for i in range(spec.layers):
        for kind in ("key", "value"):
            feed[f"past_key_values.{i}.{kind}"] = np.zeros((1, spec.kv_heads, 0, spec.head_dim), np.float32)
    logits = session.run(["logits"], feed)[0]
    if logits.shape != (1, 2, spec.vocab_size) or not np.isfinite(logits).all():
        raise GGUFImportError(f"the imported model produced logits of shape {logits.shape} that are not all finite")


def _write_tokenizer(folder: Path, tokenizer: TokenizerFiles) -> None:
    (folder / "tokenizer.json").write_text(tokenizer.tokenizer_json, encoding="utf-8")
    write_json(folder / "tokenizer_config.json", tokenizer.tokenizer_config)
    if tokenizer.chat_template:
        (folder / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")


def _manifest(name: str, alias: str, publisher: str, spec: DecoderSpec, model: GGUFModel, gguf: Path, digest: str,
              key: str, accuracy: str, tokenizer: TokenizerFiles, extra: dict[str, Any]) -> dict[str, Any]:
    label = str(model.field("general.name") or gguf.stem)
    manifest: dict[str, Any] = {
        "Name": name,
        "Alias": alias,
        "DisplayName": f"{label} (GGUF import, CPU)",
        "Publisher": publisher,
        "Task": "chat-completion",
        "License": str(model.field("general.license") or ""),
        "DeviceType": "CPU",
        "ExecutionProvider": "CPUExecutionProvider",
        "ContextLength": spec.context_length,
        "MaxOutputTokens": min(DEFAULT_MAX_OUTPUT_TOKENS, spec.context_length),
        "SupportsToolCalling": False,
        "BuildKey": key,
        "Source": f"{gguf.name} sha256:{digest}",
        "Import": {"tensorTypes": model.tensor_types(), "accuracy": accuracy,
                   "chatTemplate": tokenizer.chat_template is not None},
    }
    manifest.update(extra)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    from ingot.common.settings import default_home

    parser = argparse.ArgumentParser(prog="python -m ingot.modelbuild.ggufimport",
                                     description="Import a GGUF model (llama architecture) into the model cache.")
    parser.add_argument("gguf", type=Path, help="the .gguf file")
    parser.add_argument("--home", type=Path, default=None,
                        help="ingot's home; the model lands in HOME/models (default: INGOT_HOME or ~/.ingot)")
    parser.add_argument("--name", help="the model's full name (default: <file stem>-generic-cpu:1)")
    parser.add_argument("--alias", default="", help="a short name requests may use instead")
    parser.add_argument("--publisher", default=DEFAULT_PUBLISHER, help="the cache folder it goes under")
    parser.add_argument("--accuracy", choices=Accuracy.CHOICES, default=Accuracy.FP32,
                        help="fp32: activations stay fp32 (reference quality); int8: llama.cpp's arithmetic, faster")
    parser.add_argument("--force", action="store_true", help="import again even when up to date")
    parser.add_argument("--progress-json", action="store_true", help="report as JSON lines (for the registry)")
    args = parser.parse_args(argv)
    home = (args.home or Path(os.environ.get("INGOT_HOME") or default_home())).expanduser()

    def emit(payload: dict[str, Any]) -> None:
        print(json.dumps(payload), flush=True)

    def progress(fraction: float, message: str) -> None:
        if args.progress_json:
            emit({"progress": round(fraction, 4), "message": message})
        else:
            print(f"{fraction * 100:5.1f}%  {message}", flush=True)

    # A terminated import (the registry cancelling it) unwinds like an exception: the staging folder goes.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        result = import_gguf(args.gguf, home / "models", name=args.name, alias=args.alias, publisher=args.publisher,
                             accuracy=args.accuracy, force=args.force, progress=progress)
    except (GGUFImportError, FileNotFoundError, PermissionError) as exc:
        kind = "not_found" if isinstance(exc, FileNotFoundError) else \
            "permission_denied" if isinstance(exc, PermissionError) else "unsupported"
        if args.progress_json:
            emit({"error": {"kind": kind, "param": "name" if isinstance(exc, InvalidName) else "path",
                            "message": str(exc)}})
        else:
            print(f"import failed: {exc}", file=sys.stderr)
        return 1
    if args.progress_json:
        emit({"done": {"name": result.name, "path": str(result.path), "alreadyImported": result.already_imported}})
    else:
        print(f"{result.name} {'was already imported' if result.already_imported else 'is ready'} at {result.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
