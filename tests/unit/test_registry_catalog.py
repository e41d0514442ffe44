"""Catalog entries: what is accepted, how URLs resolve, and which variant an alias means on this host."""

from __future__ import annotations

import logging

import pytest

from services.registry.catalog import Entry, best_variant, parse_catalog, provider_alias, resolve

BASE = "http://catalog.test/v1/catalog.json"
SHA = "ab" * 32


def raw(name: str = "Phi-4-generic-cpu:4", **fields) -> dict:
    entry = {"name": name, "publisher": "Microsoft", "alias": "phi-4",
             "files": [{"path": "model.onnx", "url": "files/model.onnx", "size": 10, "sha256": SHA}]}
    entry.update(fields)
    return entry


def variant(name: str, provider: str, version: str = "1") -> Entry:
    return Entry(name=name, publisher="p", alias="m", version=version, execution_provider=provider)


def test_relative_file_urls_resolve_against_the_catalog_url_and_absolute_ones_stay():
    entry = parse_catalog([raw(files=[
        {"path": "a.onnx", "url": "files/a.onnx", "sha256": SHA},
        {"path": "b.onnx", "url": "https://cdn.test/b.onnx", "sha256": SHA.upper()},
        {"path": "sub/c.json", "sha256": SHA},
    ])], BASE)[0]
    assert [f.url for f in entry.files] == ["http://catalog.test/v1/files/a.onnx", "https://cdn.test/b.onnx",
                                            "http://catalog.test/v1/sub/c.json"]
    assert entry.files[1].sha256 == SHA
    assert entry.files[0].size is None


def test_an_entry_takes_foundry_fields_and_its_version_from_the_name():
    entry = parse_catalog([raw(runtime={"deviceType": "GPU", "executionProvider": "CUDAExecutionProvider"},
                               minFLVersion="0.5.0", promptTemplate={"prompt": "{Content}"})], BASE)[0]
    assert (entry.name, entry.version, entry.device_type, entry.execution_provider) == (
        "Phi-4-generic-cpu:4", "4", "GPU", "CUDAExecutionProvider")
    assert entry.min_fl_version == "0.5.0" and entry.prompt_template == {"prompt": "{Content}"}
    assert entry.file_size_mb == 1  # from the file sizes when the catalog gives none


@pytest.mark.parametrize("broken", [
    raw(files=[]),
    raw(files=[{"path": "../escape", "sha256": SHA}]),
    raw(files=[{"path": "/abs", "sha256": SHA}]),
    raw(files=[{"path": ".hidden", "sha256": SHA}]),
    raw(files=[{"path": "a", "sha256": "not-hex"}]),
    raw(files=[{"path": "inference_model.json", "sha256": SHA}]),
    raw(files=[{"path": "a", "sha256": SHA}, {"path": "a", "sha256": SHA}]),
    raw(publisher=""),
    raw(publisher="../etc"),
    {"publisher": "x", "files": []},
    "not an object",
])
def test_an_unusable_entry_is_skipped_with_a_warning_and_the_rest_served(broken, caplog):
    with caplog.at_level(logging.WARNING):
        entries = parse_catalog([broken, raw("Good-generic-cpu:1")], BASE)
    assert [e.name for e in entries] == ["Good-generic-cpu:1"]
    assert "skipped" in caplog.text


def test_a_catalog_that_is_not_an_array_is_an_error():
    with pytest.raises(ValueError, match="JSON array"):
        parse_catalog({"models": []}, BASE)


def test_a_duplicate_name_keeps_the_first_entry():
    entries = parse_catalog([raw(alias="first"), raw(alias="second")], BASE)
    assert [e.alias for e in entries] == ["first"]


def test_provider_aliases_are_foundrys_ep_names():
    assert [provider_alias(p) for p in ("CPUExecutionProvider", "CUDAExecutionProvider", "WebGpuExecutionProvider")] \
        == ["cpu", "cuda", "webgpu"]


def test_an_alias_picks_the_variant_the_host_runs_then_foundrys_order_then_the_highest_version():
    cpu1, cpu2 = variant("m-cpu:1", "CPUExecutionProvider"), variant("m-cpu:2", "CPUExecutionProvider", "2")
    cuda = variant("m-cuda:1", "CUDAExecutionProvider")
    assert best_variant([cuda, cpu1, cpu2], ["cpu"]) is cpu2
    assert best_variant([cpu2, cuda], ["cuda", "cpu"]) is cuda
    # Nothing this host runs: the choice falls back to Foundry's order over every variant.
    assert best_variant([cpu1, cuda], ["qnn"]) is cuda


def test_resolve_by_full_name_alias_versionless_name_and_uri():
    one, two = variant("m-cpu:1", "CPUExecutionProvider"), variant("m-cpu:2", "CPUExecutionProvider", "2")
    other = Entry(name="x:1", publisher="p", uri="azureml://x/1")
    entries = [one, two, other]
    assert resolve(entries, "M-CPU:1", ["cpu"]) is one
    assert resolve(entries, "m", ["cpu"]) is two
    assert resolve(entries, "m-cpu", ["cpu"]) is two
    assert resolve(entries, "", ["cpu"], uri="azureml://x/1") is other
    assert resolve(entries, "nothing", ["cpu"]) is None


def test_the_manifest_of_an_entry_uses_foundrys_pascal_case_and_lists_the_files():
    manifest = parse_catalog([raw()], BASE)[0].manifest()
    assert (manifest["Name"], manifest["Alias"], manifest["Publisher"]) == ("Phi-4-generic-cpu:4", "phi-4", "Microsoft")
    assert manifest["Files"] == [{"Path": "model.onnx", "Size": 10, "Sha256": SHA}]
