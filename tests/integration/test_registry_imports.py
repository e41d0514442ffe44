"""The registry's ImportModel: a GGUF on the registry's disk becomes a cached model, streamed as it goes."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from ingot.registry.v1 import registry_service_pb2 as pb
from tests.ggufmodels import TinySpec, write_tiny_gguf
from tests.integration.registry_harness import Registry


@pytest.fixture
async def registry(tmp_path):
    running = await Registry(tmp_path / "home", "", import_dirs=str(tmp_path)).start()
    yield running
    await running.stop()


async def import_events(registry: Registry, **fields) -> list[pb.ImportModelResponse]:
    return [event async for event in registry.stub.ImportModel(pb.ImportModelRequest(**fields))]


async def import_error(registry: Registry, **fields) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await import_events(registry, **fields)
    return caught.value


async def test_an_import_streams_progress_then_lists_the_model_under_its_name(registry, tmp_path):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec())
    events = await import_events(registry, path=str(gguf), name="Tiny-Import-generic-cpu:1", alias="tiny-import")
    percents = [e.progress.percent for e in events if e.HasField("progress")]
    assert percents == sorted(percents) and percents[-1] == 100.0 and len(percents) > 3
    finished = events[-1].finished
    assert (finished.name, finished.already_imported) == ("Tiny-Import-generic-cpu:1", False)
    assert Path(finished.path) == registry.settings.models_root / "imported" / "Tiny-Import-generic-cpu-1"
    assert "Tiny-Import-generic-cpu:1" in await registry.cached()
    resolved = await registry.stub.ResolveModel(pb.ResolveModelRequest(name="tiny-import"))
    assert resolved.model.path == finished.path

    again = await import_events(registry, path=str(gguf), name="Tiny-Import-generic-cpu:1", alias="tiny-import")
    assert again[-1].finished.already_imported


async def test_a_file_the_importer_cannot_read_is_invalid_and_named(registry, tmp_path):
    gguf = write_tiny_gguf(tmp_path / "gemma.gguf", TinySpec(architecture="gemma3"))
    error = await import_error(registry, path=str(gguf))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "gemma3" in error.details()
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("not a gguf file")
    assert (await import_error(registry, path=str(not_gguf))).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await registry.cached() == []


@pytest.mark.parametrize(("fields", "code", "words"), [
    ({"path": ""}, grpc.StatusCode.INVALID_ARGUMENT, "'path'"),
    ({"path": "relative/tiny.gguf"}, grpc.StatusCode.INVALID_ARGUMENT, "absolute"),
    ({"path": "/no/such/file.gguf"}, grpc.StatusCode.PERMISSION_DENIED, "--import-dirs"),
    ({"accuracy": "fp16"}, grpc.StatusCode.INVALID_ARGUMENT, "accuracy"),
    ({"name": "bad name!"}, grpc.StatusCode.INVALID_ARGUMENT, "not a valid model name"),
])
async def test_bad_requests_fail_before_anything_is_written(registry, tmp_path, fields, code, words):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec())
    error = await import_error(registry, **{"path": str(gguf), **fields})
    assert error.code() == code and words in error.details()
    assert await registry.cached() == []


async def test_an_import_never_takes_the_name_of_a_model_from_elsewhere(registry, tmp_path):
    folder = registry.settings.models_root / "HuggingFaceTB" / "Taken-generic-cpu-1"
    folder.mkdir(parents=True)
    (folder / "inference_model.json").write_text(json.dumps({"Name": "Taken-generic-cpu:1"}))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec())
    error = await import_error(registry, path=str(gguf), name="Taken-generic-cpu:1")
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS and "HuggingFaceTB" in error.details()


async def test_a_missing_file_inside_an_allowed_folder_is_not_found(registry, tmp_path):
    error = await import_error(registry, path=str(tmp_path / "none.gguf"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "none.gguf" in error.details()


async def test_an_import_outside_the_allowed_folders_is_refused_before_the_file_is_read(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    gguf = write_tiny_gguf(outside / "tiny.gguf", TinySpec())
    (allowed / "link.gguf").symlink_to(gguf)
    (allowed / "sub").mkdir()
    registry = await Registry(tmp_path / "home", "", import_dirs=str(allowed)).start()
    try:
        for path in (gguf, allowed / "link.gguf", allowed / "sub" / ".." / ".." / "outside" / "tiny.gguf",
                     outside / "absent.gguf"):
            error = await import_error(registry, path=str(path))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, path
            assert str(allowed) in error.details()
        assert await registry.cached() == []
    finally:
        await registry.stop()


async def test_by_default_imports_read_only_the_homes_imports_folder(tmp_path):
    home = tmp_path / "home"
    registry = await Registry(home, "").start()
    try:
        elsewhere = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec())
        assert (await import_error(registry, path=str(elsewhere))).code() == grpc.StatusCode.PERMISSION_DENIED
        (home / "imports").mkdir(parents=True)
        inside = write_tiny_gguf(home / "imports" / "tiny.gguf", TinySpec())
        events = await import_events(registry, path=str(inside), name="Tiny-Home-generic-cpu:1")
        assert events[-1].finished.name == "Tiny-Home-generic-cpu:1"
    finally:
        await registry.stop()
