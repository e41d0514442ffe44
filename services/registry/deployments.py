"""The deployments file (INGOT_DEPLOYMENTS, YAML or JSON): names bound to a model and settings.

    deployments:
      - name: smol-careful
        model: smollm2-135m-instruct
        parameters: {temperature: 0.2, max_tokens: 200}
        content_safety: true
        requests_per_minute: 60

The file is read again whenever its modification time changes, so an operator edits it without a restart.
A file that does not parse keeps the last good deployments (and is logged), rather than dropping them all.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import struct_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingot.registry.v1 import registry_service_pb2 as pb

log = logging.getLogger(__name__)

# Azure's deployment names: letters, digits, '-', '_' and '.'; they appear in URL paths.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class DeploymentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME.pattern)
    model: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    content_safety: bool = False
    requests_per_minute: int = Field(0, ge=0, le=2**32 - 1)

    def proto(self) -> pb.Deployment:
        defaults = struct_pb2.Struct()
        defaults.update(self.parameters)
        return pb.Deployment(name=self.name, model=self.model, default_parameters=defaults,
                             content_safety=self.content_safety, requests_per_minute=self.requests_per_minute)


class DeploymentsFileError(ValueError):
    pass


def parse(text: str, *, source: str = "deployments") -> list[DeploymentSpec]:
    """The deployments in a YAML or JSON text (JSON is YAML, but its errors read better from json)."""
    try:
        data = json.loads(text) if text.lstrip().startswith(("{", "[")) else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise DeploymentsFileError(f"{source}: not valid YAML or JSON: {exc}") from None
    if isinstance(data, Mapping):
        data = data.get("deployments")
    if data is None:
        return []
    if not isinstance(data, list):
        raise DeploymentsFileError(f"{source}: expected a list of deployments (or a 'deployments' key holding one)")
    specs = []
    for index, item in enumerate(data):
        try:
            specs.append(DeploymentSpec.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise DeploymentsFileError(f"{source}: deployment {index}: {where}: {first['msg']}") from None
    names = [spec.name.casefold() for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DeploymentsFileError(f"{source}: deployment names must be unique; repeated: {duplicates}")
    return specs


class Deployments:
    """The deployments of one file, re-read when it changes. No path: no deployments."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime: float | None = None
        self._specs: list[DeploymentSpec] = []
        if path is not None:
            # A bad file at startup is the operator's to fix before anything serves.
            self._specs = parse(path.read_text(), source=str(path))
            self._mtime = path.stat().st_mtime

    def all(self) -> list[DeploymentSpec]:
        if self.path is None:
            return []
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                self._specs = parse(self.path.read_text(), source=str(self.path))
                self._mtime = mtime
                log.info("deployments reloaded from %s: %s", self.path, [s.name for s in self._specs])
        except (OSError, DeploymentsFileError) as exc:
            log.error("keeping the last good deployments: %s", exc)
        return self._specs

    def find(self, name: str) -> DeploymentSpec | None:
        wanted = name.casefold()
        return next((spec for spec in self.all() if spec.name.casefold() == wanted), None)
