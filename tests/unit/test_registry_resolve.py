"""A requested name resolves by full name, then alias, then name without version; the highest version wins."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from services.registry.cache import CachedModel, resolve, split_name


def model(name: str, alias: str = "") -> CachedModel:
    return CachedModel(id=name, alias=alias, display_name="", publisher="p", task="chat-completion",
                       path=Path("/m") / name.replace(":", "-"), context_length=0, max_output_tokens=0, license="",
                       size_bytes=0, created=0, supports_tool_calling=False, device_type="CPU",
                       execution_provider="CPUExecutionProvider")


SMOL_1 = model("SmolLM2-135M-Instruct-generic-cpu:1", "smollm2-135m-instruct")
SMOL_2 = model("SmolLM2-135M-Instruct-generic-cpu:2", "smollm2-135m-instruct")
SMOL_10 = model("SmolLM2-135M-Instruct-generic-cpu:10", "smollm2-135m-instruct")
MINILM = model("all-MiniLM-L6-v2-generic-cpu:1", "all-minilm-l6-v2")


@pytest.mark.parametrize("name, expected", [
    ("SmolLM2-135M-Instruct-generic-cpu:1", ("SmolLM2-135M-Instruct-generic-cpu", "1")),
    ("Publisher:model:3", ("Publisher:model", "3")),
    ("no-version", ("no-version", None)),
    (":1", (":1", None)),
])
def test_split_name_takes_the_version_after_the_last_colon(name, expected):
    assert split_name(name) == expected


def test_the_full_name_matches_case_insensitively():
    assert resolve([MINILM, SMOL_1], "smollm2-135m-INSTRUCT-generic-cpu:1") is SMOL_1


def test_a_full_name_picks_that_exact_version_even_when_a_newer_one_exists():
    assert resolve([SMOL_1, SMOL_2], "SmolLM2-135M-Instruct-generic-cpu:1") is SMOL_1


def test_the_alias_matches_case_insensitively():
    assert resolve([MINILM, SMOL_1], "SmolLM2-135M-Instruct") is SMOL_1


def test_an_alias_shared_by_versions_resolves_to_the_highest_version():
    assert resolve([SMOL_2, SMOL_10, SMOL_1], "smollm2-135m-instruct") is SMOL_10


def test_the_name_without_version_resolves_to_the_highest_version_numerically():
    assert resolve([SMOL_2, SMOL_10, SMOL_1], "smollm2-135m-instruct-generic-cpu") is SMOL_10


def test_a_numeric_version_beats_a_non_numeric_one():
    preview = model("m:preview")
    assert resolve([preview, model("m:1")], "m").id == "m:1"


def test_a_full_name_beats_another_models_alias():
    confusing = model("other:1", alias="all-MiniLM-L6-v2-generic-cpu:1")
    assert resolve([confusing, MINILM], "all-MiniLM-L6-v2-generic-cpu:1") is MINILM


def test_an_alias_beats_another_models_name_without_version():
    by_base = model("phi:1")
    by_alias = model("Phi-4-generic-cpu:1", alias="phi")
    assert resolve([by_base, by_alias], "phi") is by_alias


@pytest.mark.parametrize("name", ["", "smollm2", "SmolLM2-135M-Instruct-generic-cpu:3", "smollm2-135m-instruct:1"])
def test_anything_else_resolves_to_nothing(name):
    assert resolve([SMOL_1, SMOL_2, MINILM], name) is None


def test_a_model_without_an_alias_is_not_found_by_an_empty_name():
    assert resolve([model("m:1")], "") is None


def test_an_alias_prefers_the_cached_variant_for_a_provider_this_host_runs():
    cpu = model("m-cpu:1", "m")
    cuda = dataclasses.replace(model("m-cuda:2", "m"), device_type="GPU", execution_provider="CUDAExecutionProvider")
    assert resolve([cpu, cuda], "m", ["cpu"]) is cpu
    assert resolve([cpu, cuda], "m", ["cuda", "cpu"]) is cuda
    assert resolve([cpu, cuda], "m") is cuda
