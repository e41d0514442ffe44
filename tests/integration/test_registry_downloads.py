"""The registry's catalog and downloads over gRPC, against a real HTTP catalog host on 127.0.0.1.

The host serves the built default model's own files under other names; its switches drop connections,
hold responses, corrupt and hide files, so every failure here is a real one on a real socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from pathlib import Path

import grpc
import pytest

from ingot.common import metrics
from ingot.common.errors import (DataLoss, FailedPrecondition, NotFound, PermissionDenied, ResourceExhausted,
                                 error_from_rpc)
from ingot.registry.v1 import registry_service_pb2 as pb
from tests.catalogserver import SMALL_FILES, CatalogServer, ServedModel
from tests.integration.registry_harness import Registry

NAME = "SmolLM2-Files-generic-cpu:1"
FOLDER = "SmolLM2-Files-generic-cpu-1"
ALIAS = "smollm2-files"
CUDA_NAME = "SmolLM2-Files-cuda-gpu:1"
SIZELESS = "SmolLM2-Sizeless-generic-cpu:1"
PUBLISHER = "IngotTests"


@pytest.fixture
def catalog_host(smollm2_dir: Path):
    server = CatalogServer([
        ServedModel(NAME, ALIAS, smollm2_dir, SMALL_FILES),
        # A GPU variant listed first: on this CPU host the alias must still pick the CPU one.
        ServedModel(CUDA_NAME, ALIAS, smollm2_dir, SMALL_FILES[:1], execution_provider="CUDAExecutionProvider",
                    device_type="GPU"),
        ServedModel(SIZELESS, "smollm2-sizeless", smollm2_dir, SMALL_FILES, sizes=False),
    ])
    server.models.insert(0, server.models.pop(1))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def registry(tmp_path: Path, catalog_host: CatalogServer):
    running = await Registry(tmp_path / "home", catalog_host.catalog_url).start()
    yield running
    await running.stop()


def models_root(registry: Registry) -> Path:
    return registry.settings.models_root


def rpc_error(caught: pytest.ExceptionInfo) -> Exception:
    return error_from_rpc(caught.value)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_download_streams_progress_and_installs_every_verified_file_with_the_manifest(registry, smollm2_dir):
    fetched = metrics.DOWNLOAD_BYTES.labels(NAME)
    before = fetched._value.get()
    events = await registry.download(ALIAS)
    progress = [e.progress for e in events[:-1]]
    assert all(e.HasField("progress") for e in events[:-1]) and events[-1].HasField("finished")
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert progress[-1].bytes_done == progress[-1].bytes_total == sum((smollm2_dir / f).stat().st_size
                                                                        for f in SMALL_FILES)
    finished = events[-1].finished
    folder = models_root(registry) / PUBLISHER / FOLDER
    assert (finished.name, finished.path, finished.already_cached) == (NAME, str(folder), False)
    for name in SMALL_FILES:
        assert sha256(folder / name) == sha256(smollm2_dir / name), name
    manifest = json.loads((folder / "inference_model.json").read_text())
    assert (manifest["Name"], manifest["Alias"], manifest["Publisher"]) == (NAME, ALIAS, PUBLISHER)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*SMALL_FILES, "inference_model.json"])
    assert await registry.cached() == [NAME]
    assert not (models_root(registry) / ".staging" / f"{FOLDER}.partial").exists()
    # Prometheus' ingot_download_bytes_total counts what crossed the network.
    assert fetched._value.get() - before == progress[-1].bytes_total


async def test_a_second_download_of_a_cached_model_fetches_nothing(registry, catalog_host):
    await registry.download(NAME)
    before = len(catalog_host.requests)
    events = await registry.download(NAME)
    assert [e.finished.already_cached for e in events] == [True]
    assert len(catalog_host.requests) == before


async def test_the_catalog_lists_remote_entries_and_cached_models_with_the_cached_flag(registry, tmp_path):
    local = models_root(registry) / "HuggingFaceTB" / "Local-Only-generic-cpu-1"
    local.mkdir(parents=True)
    (local / "inference_model.json").write_text(json.dumps({"Name": "Local-Only-generic-cpu:1", "Alias": "local-only",
                                                            "Task": "chat-completion"}))
    await registry.download(NAME)
    entries = {m.name: m for m in (await registry.stub.ListCatalog(pb.ListCatalogRequest(), timeout=10)).models}
    assert set(entries) == {NAME, CUDA_NAME, SIZELESS, "Local-Only-generic-cpu:1"}
    assert (entries[NAME].cached, entries[CUDA_NAME].cached, entries["Local-Only-generic-cpu:1"].cached) == (
        True, False, True)
    assert entries[NAME].execution_provider == "CPUExecutionProvider"
    assert entries[CUDA_NAME].device_type == "GPU"
    assert entries[NAME].uri.startswith("azureml://") and entries[NAME].version == "1"
    assert entries["Local-Only-generic-cpu:1"].publisher == "HuggingFaceTB"


async def test_an_alias_resolves_to_the_variant_this_cpu_host_runs(registry):
    events = await registry.download(ALIAS)
    assert events[-1].finished.name == NAME


async def test_a_dropped_connection_resumes_from_the_byte_where_it_stopped(registry, catalog_host, smollm2_dir):
    catalog_host.drop_after[(FOLDER, "tokenizer.json")] = 1_000_000
    events = await registry.download(NAME)
    assert events[-1].finished.name == NAME
    requests = catalog_host.file_requests(FOLDER, "tokenizer.json")
    assert [(r.range, r.status) for r in requests] == [(None, 200), ("bytes=1000000-", 206)]
    assert requests[1].bytes_sent == (smollm2_dir / "tokenizer.json").stat().st_size - 1_000_000
    assert sha256(models_root(registry) / PUBLISHER / FOLDER / "tokenizer.json") == sha256(
        smollm2_dir / "tokenizer.json")


async def test_a_restarted_registry_resumes_the_partial_file_with_range(registry, catalog_host, smollm2_dir):
    catalog_host.hold_at[(FOLDER, "tokenizer.json")] = 2_000_000
    part = models_root(registry) / ".staging" / f"{FOLDER}.partial" / "tokenizer.json.part"
    call = registry.stub.DownloadModel(pb.DownloadModelRequest(name=NAME))
    reader = asyncio.create_task(_drain(call))
    await asyncio.to_thread(catalog_host.holding.wait, 30)
    for _ in range(200):
        if part.exists() and part.stat().st_size == 2_000_000:
            break
        await asyncio.sleep(0.05)
    assert part.stat().st_size == 2_000_000
    call.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    assert NAME not in await registry.cached()
    await registry.restart()
    catalog_host.release_all()
    events = await registry.download(NAME)
    assert events[-1].finished.name == NAME and not events[-1].finished.already_cached
    assert [r.range for r in catalog_host.file_requests(FOLDER, "tokenizer.json")][-1] == "bytes=2000000-"
    assert sha256(models_root(registry) / PUBLISHER / FOLDER / "tokenizer.json") == sha256(
        smollm2_dir / "tokenizer.json")


async def _drain(call) -> list:
    return [event async for event in call]


async def test_a_corrupted_file_is_rejected_and_nothing_is_left_in_the_cache(registry, catalog_host):
    catalog_host.corrupt.add((FOLDER, "tokenizer.json"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.download(NAME)
    error = rpc_error(caught)
    assert isinstance(error, DataLoss) and error.code == "checksum_mismatch"
    assert "Checksum mismatch for tokenizer.json" in error.message
    assert await registry.cached() == []
    assert not (models_root(registry) / PUBLISHER).exists()
    partial = models_root(registry) / ".staging" / f"{FOLDER}.partial"
    assert not (partial / "tokenizer.json").exists() and not (partial / "tokenizer.json.part").exists()
    # The host serves the right bytes again: the next download succeeds, reusing the files that were good.
    catalog_host.corrupt.clear()
    before = len(catalog_host.requests)
    assert (await registry.download(NAME))[-1].finished.name == NAME
    assert [r.path for r in catalog_host.requests[before:]] == ["tokenizer.json"]


async def test_a_file_the_host_does_not_have_is_not_found_naming_the_file(registry, catalog_host):
    catalog_host.missing.add((FOLDER, "model.onnx"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.download(NAME)
    error = rpc_error(caught)
    assert isinstance(error, NotFound) and error.code == "file_not_found"
    assert "model.onnx" in error.message and "404" in error.message
    assert await registry.cached() == []


async def test_an_unknown_model_is_not_found_on_param_model(registry):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.download("no-such-model")
    error = rpc_error(caught)
    assert isinstance(error, NotFound) and (error.param, error.code) == ("model", "model_not_found")
    assert "'no-such-model' is not in the catalog" in error.message


async def test_two_simultaneous_downloads_of_one_model_never_interleave(registry, catalog_host):
    catalog_host.hold_at[(FOLDER, "tokenizer.json")] = 1_500_000
    first = asyncio.create_task(registry.download(NAME))
    await asyncio.to_thread(catalog_host.holding.wait, 30)
    second = asyncio.create_task(registry.download(NAME))
    await asyncio.sleep(1.0)
    assert not second.done()
    # While the first holds the lock the second asks the host for nothing.
    assert len(catalog_host.file_requests(FOLDER, "tokenizer.json")) == 1
    catalog_host.release_all()
    first_events, second_events = await asyncio.gather(first, second)
    assert first_events[-1].finished.already_cached is False
    assert second_events[-1].finished.already_cached is True
    for name in SMALL_FILES:
        assert len(catalog_host.file_requests(FOLDER, name)) == 1, name
    assert await registry.cached() == [NAME]


async def test_the_token_goes_to_the_catalog_host_as_a_bearer_authorization(registry, catalog_host):
    catalog_host.required_token = "s3cret"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.download(NAME)
    error = rpc_error(caught)
    assert isinstance(error, PermissionDenied) and "HTTP 401" in error.message
    assert (await registry.download(NAME, token="s3cret"))[-1].finished.name == NAME
    assert {r.authorization for r in catalog_host.requests if r.status != 401} == {"Bearer s3cret"}


async def test_custom_dir_receives_the_model_and_the_cache_stays_as_it_was(registry, tmp_path):
    custom = tmp_path / "elsewhere"
    events = await registry.download(NAME, custom_dir=str(custom))
    assert events[-1].finished.path == str(custom / PUBLISHER / FOLDER)
    assert (custom / PUBLISHER / FOLDER / "inference_model.json").is_file()
    assert await registry.cached() == []


async def test_a_relative_custom_dir_is_invalid(registry):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.download(NAME, custom_dir="relative/dir")
    assert rpc_error(caught).param == "customDirPath"


async def test_delete_takes_the_model_out_of_the_cache(registry):
    await registry.download(NAME)
    reply = await registry.stub.DeleteModel(pb.DeleteModelRequest(name=ALIAS), timeout=10)
    assert reply.name == NAME
    assert await registry.cached() == []
    assert not (models_root(registry) / PUBLISHER / FOLDER).exists()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.DeleteModel(pb.DeleteModelRequest(name=NAME), timeout=10)
    assert isinstance(rpc_error(caught), NotFound)


async def test_the_catalog_is_kept_on_disk_for_when_its_host_is_down(registry, catalog_host):
    await registry.stub.ListCatalog(pb.ListCatalogRequest(), timeout=10)
    catalog_host.catalog_available = False
    await registry.restart()
    entries = (await registry.stub.ListCatalog(pb.ListCatalogRequest(refresh=True), timeout=10)).models
    assert NAME in {m.name for m in entries}
    assert (await registry.download(NAME))[-1].finished.name == NAME


async def test_without_a_reachable_catalog_an_unknown_model_is_unavailable_saying_why(tmp_path):
    registry = await Registry(tmp_path / "home", "http://127.0.0.1:9/catalog.json").start()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await registry.download(NAME)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "could not be fetched" in caught.value.details()
    finally:
        await registry.stop()


async def test_a_model_built_here_is_listed_and_already_cached_without_a_catalog(tmp_path, smollm2_dir):
    home = tmp_path / "home"
    (home / "models" / smollm2_dir.parent.name).mkdir(parents=True)
    (home / "models" / smollm2_dir.parent.name / smollm2_dir.name).symlink_to(smollm2_dir)
    registry = await Registry(home, "").start()
    try:
        entries = (await registry.stub.ListCatalog(pb.ListCatalogRequest(), timeout=10)).models
        assert [(m.name, m.cached) for m in entries] == [("SmolLM2-135M-Instruct-generic-cpu:1", True)]
        files = sum(f.stat().st_size for f in smollm2_dir.iterdir() if f.is_file())
        assert entries[0].file_size_mb == math.ceil(files / 2**20) > 100
        events = await registry.download("smollm2-135m-instruct")
        assert [e.finished.already_cached for e in events] == [True]
    finally:
        await registry.stop()


async def test_too_little_space_is_said_before_any_byte_is_fetched(registry, catalog_host, small_disk):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.download(NAME, custom_dir=str(small_disk))
    error = rpc_error(caught)
    assert isinstance(error, ResourceExhausted) and error.code == "insufficient_storage"
    assert "Not enough disk space" in error.message
    assert catalog_host.requests == []


async def test_a_disk_that_fills_up_mid_download_says_so_and_keeps_nothing_half_written(registry, small_disk):
    # The catalog gives no sizes, so only the write itself finds out that the disk is full.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.download(SIZELESS, custom_dir=str(small_disk))
    error = rpc_error(caught)
    assert isinstance(error, ResourceExhausted) and error.code == "insufficient_storage"
    assert "disk is full" in error.message
    leftovers = [p for p in small_disk.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert leftovers == []


async def test_a_cached_model_that_is_not_in_the_catalog_cannot_go_to_a_custom_dir(tmp_path, smollm2_dir):
    home = tmp_path / "home"
    (home / "models" / "HuggingFaceTB").mkdir(parents=True)
    (home / "models" / "HuggingFaceTB" / smollm2_dir.name).symlink_to(smollm2_dir)
    registry = await Registry(home, "").start()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await registry.download("smollm2-135m-instruct", custom_dir=str(tmp_path / "x"))
        assert isinstance(rpc_error(caught), FailedPrecondition)
    finally:
        await registry.stop()
