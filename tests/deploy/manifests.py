"""The rendered Kubernetes overlays, as the tests of deploy/kubernetes see them (`kubectl kustomize`, offline)."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "prod", "gpu")
# The oldest Kubernetes the manifests support: the native preStop `sleep` action is on by default from 1.30.
OLDEST_KUBERNETES = "1.30.0"
NEWEST_KUBERNETES = "1.37.0"
WORKLOADS = ("edge", "tokenizer", "registry", "inference", "embeddings")

Doc = dict[str, Any]


@functools.cache
def rendered_text(overlay: str) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: it renders the overlays (`kubectl kustomize`); install kubectl >= 1.27")
    done = subprocess.run([kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{done.stderr}"
    return done.stdout


def render(overlay: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(rendered_text(overlay)) if doc]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(deployment: Doc) -> Doc:
    return deployment["spec"]["template"]["spec"]


def pod_labels(deployment: Doc) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"].get("labels", {})


def containers(deployment: Doc, *, init: bool = False) -> Iterator[Doc]:
    spec = pod_spec(deployment)
    yield from spec["containers"]
    if init:
        yield from spec.get("initContainers", [])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def selected_deployments(docs: list[Doc], selector: dict[str, str]) -> list[Doc]:
    return [d for d in of_kind(docs, "Deployment") if selects(selector, pod_labels(d))]


def config_maps(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {doc["metadata"]["name"]: doc.get("data", {}) for doc in of_kind(docs, "ConfigMap")}


def environment(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The variables a container gets: its ConfigMaps' keys (envFrom), then its own env (which wins)."""
    maps = config_maps(docs)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in maps, f"container {container['name']} reads ConfigMap {name}, which is not rendered"
        env.update(maps[name])
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value", "")
    return env
