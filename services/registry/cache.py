"""The model cache on disk: `<models>/<publisher>/<folder>/inference_model.json`, read into plain data.

A folder is a model only once its manifest is there: downloads and builds write the manifest last and
assemble their folders under a dot-named staging folder, so neither a folder without a manifest nor
anything whose name starts with "." is listed. Nothing here knows gRPC, so the rules are testable alone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_NAME = "inference_model.json"
GENAI_CONFIG_NAME = "genai_config.json"
_UINT32_MAX = 2**32 - 1


class ManifestError(ValueError):
    """A manifest that cannot describe a model; the folder is skipped, the listing goes on."""


@dataclass(frozen=True)
class CachedModel:
    id: str
    alias: str
    display_name: str
    publisher: str
    # The manifest's own spelling ("chat-completion", "embeddings"); the servicer maps it to the enum.
    task: str
    path: Path
    context_length: int
    max_output_tokens: int
    license: str
    size_bytes: int
    created: int
    supports_tool_calling: bool
    device_type: str
    execution_provider: str


def split_name(name: str) -> tuple[str, str | None]:
    """("SmolLM2-135M-Instruct-generic-cpu", "1") from "SmolLM2-135M-Instruct-generic-cpu:1"."""
    base, sep, version = name.rpartition(":")
    return (base, version) if sep and base else (name, None)


def version_key(model: CachedModel) -> tuple[bool, int, str]:
    # Numeric versions compare as numbers ("10" beats "9"); anything else sorts below them.
    version = split_name(model.id)[1] or ""
    return (version.isdigit(), int(version) if version.isdigit() else 0, version)


def resolve(models: Sequence[CachedModel], name: str, providers: Sequence[str] = ()) -> CachedModel | None:
    """The model `name` means: its full name, else its alias, else its name without ":version".

    All three compare case-insensitively. Several models may share an alias or a versionless name (a new
    version next to an old one); the highest version wins. Among variants of one alias, those for an
    execution provider in `providers` ("cpu", "cuda", ...) come first, as the catalog orders them.
    """
    wanted = name.casefold()
    if not wanted:
        return None
    for model in models:
        if model.id.casefold() == wanted:
            return model
    by_alias = [m for m in models if m.alias and m.alias.casefold() == wanted]
    # A manifest that names no provider leaves it to genai_config.json: nothing says this host cannot run it.
    runnable = [m for m in by_alias if not m.execution_provider
                or m.execution_provider.removesuffix("ExecutionProvider").lower() in providers]
    by_alias = runnable or by_alias
    if by_alias:
        return max(by_alias, key=version_key)
    by_base = [m for m in models if split_name(m.id)[0].casefold() == wanted]
    return max(by_base, key=version_key) if by_base else None


def _string(data: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise ManifestError(f"{key} is missing")
        return ""
    if not isinstance(value, str):
        raise ManifestError(f"{key} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise ManifestError(f"{key} is empty")
    return value


def _count(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    # bool is an int in Python; a manifest saying "ContextLength": true is broken, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
        raise ManifestError(f"{key} must be a whole number from 0 to {_UINT32_MAX}, not {value!r}")
    return value


def _flag(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ManifestError(f"{key} must be true or false, not {value!r}")
    return value


def context_length_from_genai_config(config: Any) -> int:
    """onnxruntime-genai's `model.context_length`, or 0 when the config does not say."""
    model = config.get("model") if isinstance(config, Mapping) else None
    value = model.get("context_length") if isinstance(model, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _UINT32_MAX:
        return 0
    return value


def parse_manifest(data: Any, folder: Path, *, size_bytes: int, created: int,
                   genai_config: Any = None) -> CachedModel:
    """A CachedModel from a decoded manifest; `genai_config` fills the context length the manifest omits."""
    if not isinstance(data, Mapping):
        raise ManifestError(f"the manifest must be a JSON object, not {type(data).__name__}")
    context_length = _count(data, "ContextLength")
    if not context_length:
        context_length = context_length_from_genai_config(genai_config)
    return CachedModel(
        id=_string(data, "Name", required=True),
        alias=_string(data, "Alias"),
        display_name=_string(data, "DisplayName"),
        # Foundry Local keeps models under their publisher's folder: the folder speaks for an omission.
        publisher=_string(data, "Publisher") or folder.parent.name,
        task=_string(data, "Task"),
        path=folder,
        context_length=context_length,
        max_output_tokens=_count(data, "MaxOutputTokens") or 0,
        license=_string(data, "License"),
        size_bytes=size_bytes,
        created=created,
        supports_tool_calling=_flag(data, "SupportsToolCalling"),
        device_type=_string(data, "DeviceType"),
        execution_provider=_string(data, "ExecutionProvider"),
    )


def folder_size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                # A file removed mid-walk (a model being deleted) is simply not counted.
                continue
    return total


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_model(folder: Path) -> CachedModel:
    """The model in `folder`; raises ManifestError when its manifest cannot be read or describes no model."""
    manifest_path = folder / MANIFEST_NAME
    try:
        created = int(manifest_path.stat().st_mtime)
        data = _read_json(manifest_path)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {MANIFEST_NAME}: {exc}") from exc
    genai_config = None
    if isinstance(data, Mapping) and not data.get("ContextLength"):
        try:
            genai_config = _read_json(folder / GENAI_CONFIG_NAME)
        except (OSError, ValueError):
            # Without either source the context length is unknown (0), which is no reason to hide the model.
            genai_config = None
    return parse_manifest(data, folder, size_bytes=folder_size(folder), created=created,
                          genai_config=genai_config)


# Every call rescans the cache, so a broken manifest would log the same warning on every request: say it
# once per folder, and again only when the problem changes.
_reported: dict[Path, str] = {}


def _report(folder: Path, problem: ManifestError) -> None:
    text = str(problem)
    if _reported.get(folder) != text:
        _reported[folder] = text
        log.warning("skipping %s: %s", folder, text)


def _visible_folders(parent: Path) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot list %s: %s", parent, exc)
        return
    for entry in entries:
        if not entry.name.startswith(".") and entry.is_dir():
            yield Path(entry.path)


def scan(models_root: Path) -> list[CachedModel]:
    """Every model under `models_root`, in folder order; a broken manifest is logged and skipped."""
    models = []
    for publisher in _visible_folders(models_root):
        for folder in _visible_folders(publisher):
            if not (folder / MANIFEST_NAME).is_file():
                continue
            try:
                models.append(load_model(folder))
            except ManifestError as exc:
                _report(folder, exc)
    return models
