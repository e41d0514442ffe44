"""The model catalog: the remote one at INGOT_CATALOG_URL, fetched and kept on disk, merged with the cache.

The remote catalog is a JSON array of Foundry Local `/foundry/list` entries, each with the `files` to
download (`path`, `url` relative to the catalog's own URL, `size`, `sha256`). An entry that cannot be
understood is logged and left out; the rest of the catalog still serves. The last good copy is kept in
`$INGOT_HOME/catalog.json`, so a registry that restarts while the catalog host is down still knows it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import posixpath
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from ingot.common.modelcache import MANIFEST_NAME, check_name
from services.registry.cache import CachedModel, split_name

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 30.0
# After a failed fetch the registry serves what it has and asks again no sooner than this.
RETRY_AFTER_FAILURE_S = 30.0
# Foundry Local's order of preference among the variants of one alias, on hosts other than Windows.
PROVIDER_PRIORITY = ("qnn", "cuda", "webgpu", "cpu")
DEFAULT_PROVIDER_TYPE = "AzureFoundry"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def provider_alias(execution_provider: str) -> str:
    """"CUDAExecutionProvider" → "cuda", as Foundry Local's `ep` parameter names providers."""
    return execution_provider.removesuffix("ExecutionProvider").lower()


class _CatalogModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class _Runtime(_CatalogModel):
    device_type: str = "CPU"
    execution_provider: str = "CPUExecutionProvider"


class _File(_CatalogModel):
    path: str
    url: str = ""
    size: int | None = Field(None, ge=0)
    sha256: str

    @field_validator("path")
    @classmethod
    def _relative(cls, path: str) -> str:
        # The path becomes a file inside the model's folder: nothing that could climb out of it.
        parts = path.split("/")
        if (not path or path.startswith("/") or "\\" in path or "\0" in path
                or any(p in ("", ".", "..") or p.startswith(".") for p in parts)):
            raise ValueError(f"{path!r} is not a plain relative path")
        return path

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.lower()
        if not _SHA256.match(value):
            raise ValueError("must be 64 hexadecimal digits")
        return value


class _Entry(_CatalogModel):
    name: str = Field(min_length=1)
    display_name: str = ""
    provider_type: str = DEFAULT_PROVIDER_TYPE
    uri: str = ""
    version: str = ""
    model_type: str = "ONNX"
    prompt_template: dict[str, str] | None = None
    publisher: str = Field(min_length=1)
    task: str = ""
    runtime: _Runtime = Field(default_factory=_Runtime)
    file_size_mb: int | None = Field(None, ge=0)
    model_settings: dict[str, Any] | None = None
    alias: str = ""
    supports_tool_calling: bool = False
    license: str = ""
    license_description: str = ""
    parent_model_uri: str = ""
    max_output_tokens: int = Field(0, ge=0, le=2**32 - 1)
    min_fl_version: str = Field("", alias="minFLVersion")
    files: list[_File] = Field(min_length=1)


@dataclass(frozen=True)
class CatalogFile:
    path: str
    url: str
    size: int | None
    sha256: str


@dataclass(frozen=True)
class Entry:
    """One model the registry can name: from the remote catalog (with files) or only in the cache."""

    name: str
    publisher: str
    display_name: str = ""
    provider_type: str = DEFAULT_PROVIDER_TYPE
    uri: str = ""
    version: str = ""
    model_type: str = "ONNX"
    prompt_template: dict[str, str] = field(default_factory=dict)
    task: str = ""
    device_type: str = "CPU"
    execution_provider: str = "CPUExecutionProvider"
    file_size_mb: int = 0
    model_settings: dict[str, Any] = field(default_factory=dict)
    alias: str = ""
    supports_tool_calling: bool = False
    license: str = ""
    license_description: str = ""
    parent_model_uri: str = ""
    max_output_tokens: int = 0
    min_fl_version: str = ""
    files: tuple[CatalogFile, ...] = ()

    @property
    def downloadable(self) -> bool:
        return bool(self.files)

    def manifest(self) -> dict[str, Any]:
        """The fields of `inference_model.json` (Foundry's PascalCase) this entry fills."""
        return {
            "Name": self.name, "Alias": self.alias, "DisplayName": self.display_name, "Publisher": self.publisher,
            "Task": self.task, "License": self.license, "LicenseDescription": self.license_description,
            "DeviceType": self.device_type, "ExecutionProvider": self.execution_provider,
            "MaxOutputTokens": self.max_output_tokens, "SupportsToolCalling": self.supports_tool_calling,
            "Version": self.version, "Uri": self.uri, "ProviderType": self.provider_type,
            "ModelType": self.model_type, "PromptTemplate": self.prompt_template,
            "ModelSettings": self.model_settings, "ParentModelUri": self.parent_model_uri,
            "MinFLVersion": self.min_fl_version,
            "Files": [{"Path": f.path, "Size": f.size, "Sha256": f.sha256} for f in self.files],
        }


def _entry(raw: _Entry, base_url: str) -> Entry:
    name = raw.name
    if ":" not in name and raw.version:
        name = f"{name}:{raw.version}"
    version = raw.version or (split_name(name)[1] or "")
    check_name(raw.publisher)
    check_name(name.replace(":", "-"))
    files = tuple(CatalogFile(f.path, urljoin(base_url, f.url or f.path), f.size, f.sha256) for f in raw.files)
    if len({f.path for f in files}) != len(files):
        raise ValueError("two files share one path")
    if any(f.path == MANIFEST_NAME for f in files):
        raise ValueError(f"{MANIFEST_NAME} is written by the registry, not downloaded")
    size_mb = raw.file_size_mb
    if size_mb is None:
        size_mb = math.ceil(sum(f.size or 0 for f in files) / 2**20)
    return Entry(
        name=name, publisher=raw.publisher, display_name=raw.display_name or name, provider_type=raw.provider_type,
        uri=raw.uri, version=version, model_type=raw.model_type, prompt_template=raw.prompt_template or {},
        task=raw.task, device_type=raw.runtime.device_type, execution_provider=raw.runtime.execution_provider,
        file_size_mb=size_mb, model_settings=raw.model_settings or {}, alias=raw.alias,
        supports_tool_calling=raw.supports_tool_calling, license=raw.license,
        license_description=raw.license_description, parent_model_uri=raw.parent_model_uri,
        max_output_tokens=raw.max_output_tokens, min_fl_version=raw.min_fl_version, files=files,
    )


def parse_catalog(data: Any, base_url: str) -> list[Entry]:
    """The entries of a decoded catalog; entries that cannot be used are logged and skipped."""
    if not isinstance(data, list):
        raise ValueError(f"the catalog must be a JSON array, not {type(data).__name__}")
    entries: list[Entry] = []
    seen: set[str] = set()
    for index, item in enumerate(data):
        label = item.get("name") if isinstance(item, dict) else None
        try:
            entry = _entry(_Entry.model_validate(item), base_url)
        except (ValidationError, ValueError) as exc:
            log.warning("catalog entry %d (%s) skipped: %s", index, label or "unnamed", _reason(exc))
            continue
        if entry.name.casefold() in seen:
            log.warning("catalog entry %d (%s) skipped: the name appears earlier in the catalog", index, entry.name)
            continue
        seen.add(entry.name.casefold())
        entries.append(entry)
    return entries


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)


def cached_entry(model: CachedModel, manifest: dict[str, Any] | None = None) -> Entry:
    """A model only the cache knows (a default built here, or one whose catalog is gone) as a catalog entry."""
    manifest = manifest or {}
    version = split_name(model.id)[1] or ""
    template = manifest.get("PromptTemplate")
    settings = manifest.get("ModelSettings")
    return Entry(
        name=model.id, publisher=model.publisher, display_name=model.display_name or model.id,
        provider_type=str(manifest.get("ProviderType") or DEFAULT_PROVIDER_TYPE),
        uri=str(manifest.get("Uri") or model.path.as_uri()), version=version,
        prompt_template={str(k): str(v) for k, v in template.items()} if isinstance(template, dict) else {},
        task=model.task, device_type=model.device_type or "CPU",
        execution_provider=model.execution_provider or "CPUExecutionProvider",
        file_size_mb=math.ceil(model.size_bytes / 2**20),
        model_settings=settings if isinstance(settings, dict) else {}, alias=model.alias,
        supports_tool_calling=model.supports_tool_calling, license=model.license,
        max_output_tokens=model.max_output_tokens,
    )


def merge(remote: Sequence[Entry], cached: Iterable[Entry]) -> list[Entry]:
    """The remote entries, then every cached model the remote catalog does not name."""
    names = {entry.name.casefold() for entry in remote}
    return [*remote, *(entry for entry in cached if entry.name.casefold() not in names)]


def _version_number(entry: Entry) -> int:
    version = entry.version or split_name(entry.name)[1] or ""
    return int(version) if version.isdigit() else -1


def best_variant(candidates: Sequence[Entry], providers: Sequence[str]) -> Entry:
    """Foundry Local's choice among variants: the preferred provider this host runs, then the highest version.

    Variants for providers the host lacks are chosen only when there is nothing else.
    """
    runnable = [e for e in candidates if provider_alias(e.execution_provider) in providers] or list(candidates)

    def rank(entry: Entry) -> tuple[int, int]:
        alias = provider_alias(entry.execution_provider)
        priority = PROVIDER_PRIORITY.index(alias) if alias in PROVIDER_PRIORITY else len(PROVIDER_PRIORITY)
        return (-priority, _version_number(entry))

    return max(runnable, key=rank)


def resolve(entries: Sequence[Entry], name: str, providers: Sequence[str], uri: str = "") -> Entry | None:
    """The entry `name` means: its full name, else its alias, else its name without ":version"; else `uri`."""
    wanted = name.casefold()
    if wanted:
        for entry in entries:
            if entry.name.casefold() == wanted:
                return entry
        by_alias = [e for e in entries if e.alias and e.alias.casefold() == wanted]
        if by_alias:
            return best_variant(by_alias, providers)
        by_base = [e for e in entries if split_name(e.name)[0].casefold() == wanted]
        if by_base:
            return max(by_base, key=_version_number)
    if uri:
        for entry in entries:
            if entry.uri and entry.uri == uri:
                return entry
    return None


class RemoteCatalog:
    """The catalog at one URL: fetched on first use, kept on disk, fetched again once `ttl` seconds old."""

    def __init__(self, url: str, cache_path: Path, ttl: float) -> None:
        self.url = url
        self.cache_path = cache_path
        self.ttl = ttl
        self.error: str | None = None
        self._entries: list[Entry] = []
        self._fetched_at = 0.0
        self._next_try = 0.0
        self._lock = asyncio.Lock()
        self._loaded_disk_copy = False

    @property
    def configured(self) -> bool:
        return bool(self.url)

    async def entries(self, *, refresh: bool = False) -> list[Entry]:
        if not self.url:
            return []
        async with self._lock:
            if not self._loaded_disk_copy:
                self._loaded_disk_copy = True
                await asyncio.to_thread(self._load_disk_copy)
            now = time.time()
            stale = now - self._fetched_at >= self.ttl
            if (refresh or stale) and (refresh or now >= self._next_try):
                await self._fetch()
            return list(self._entries)

    async def _fetch(self) -> None:
        try:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(self.url) as response:
                    if response.status != 200:
                        raise ValueError(f"HTTP {response.status} {response.reason}")
                    raw = json.loads(await response.read())
            entries = parse_catalog(raw, self.url)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            self.error = f"the catalog at {self.url} could not be fetched ({reason})"
            self._next_try = time.time() + min(self.ttl, RETRY_AFTER_FAILURE_S)
            log.warning("%s; %s", self.error,
                        "using the copy fetched earlier" if self._entries else "only cached models are listed")
            return
        self.error = None
        self._entries = entries
        self._fetched_at = time.time()
        log.info("catalog fetched from %s: %d models", self.url, len(entries))
        await asyncio.to_thread(self._save_disk_copy, raw)

    def _load_disk_copy(self) -> None:
        try:
            saved = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring the saved catalog %s: %s", self.cache_path, exc)
            return
        if not isinstance(saved, dict) or saved.get("url") != self.url:
            return
        try:
            self._entries = parse_catalog(saved.get("catalog"), self.url)
            self._fetched_at = float(saved.get("fetched_at", 0))
        except (TypeError, ValueError) as exc:
            log.warning("ignoring the saved catalog %s: %s", self.cache_path, exc)

    def _save_disk_copy(self, raw: Any) -> None:
        partial = self.cache_path.with_name(f".{self.cache_path.name}.partial")
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"url": self.url, "fetched_at": self._fetched_at, "catalog": raw}),
                               encoding="utf-8")
            os.replace(partial, self.cache_path)
        except OSError as exc:
            log.warning("could not save the catalog to %s: %s", self.cache_path, exc)


def same_origin(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def file_destination(folder: Path, catalog_path: str) -> Path:
    """Where a catalog file lands inside a model folder (the path was checked to stay inside it)."""
    return folder.joinpath(*posixpath.normpath(catalog_path).split("/"))
