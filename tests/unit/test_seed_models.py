"""ingot seed-models: the image's baked models into an (initially empty) cache volume, never over a model there."""

from __future__ import annotations

import json

from ingot.common.modelcache import MANIFEST_NAME
from ingot.seedmodels import main, seed


def make_model(root, publisher, name, content="weights"):
    folder = root / publisher / name
    (folder / "sub").mkdir(parents=True)
    (folder / "model.onnx").write_text(content)
    (folder / "sub" / "config.json").write_text("{}")
    (folder / MANIFEST_NAME).write_text(json.dumps({"Name": name}))
    return folder


def test_missing_models_are_installed_whole_with_their_manifest(tmp_path):
    baked = tmp_path / "baked"
    make_model(baked, "pub", "chat-1")
    make_model(baked, "pub", "embed-1")
    models = tmp_path / "home" / "models"
    assert seed(baked, models) == ["pub/chat-1", "pub/embed-1"]
    installed = models / "pub" / "chat-1"
    assert (installed / "model.onnx").read_text() == "weights"
    assert (installed / "sub" / "config.json").is_file()
    assert json.loads((installed / MANIFEST_NAME).read_text()) == {"Name": "chat-1"}
    assert not [p for p in (models / ".staging").iterdir() if not p.name.endswith(".lock")]


def test_a_model_already_in_the_cache_is_left_untouched(tmp_path):
    baked = tmp_path / "baked"
    make_model(baked, "pub", "chat-1", content="new")
    models = tmp_path / "models"
    existing = make_model(models, "pub", "chat-1", content="old")
    assert seed(baked, models) == []
    assert (existing / "model.onnx").read_text() == "old"


def test_a_folder_without_a_manifest_is_not_a_model_and_is_not_copied(tmp_path):
    baked = tmp_path / "baked"
    (make_model(baked, "pub", "half-1") / MANIFEST_NAME).unlink()
    assert seed(baked, tmp_path / "models") == []
    assert not (tmp_path / "models" / "pub").exists()


def test_the_command_reads_its_folders_from_ingot_variables(tmp_path, monkeypatch, capsys):
    make_model(tmp_path / "baked", "pub", "chat-1")
    monkeypatch.setenv("INGOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INGOT_BAKED_MODELS", str(tmp_path / "baked"))
    assert main([]) == 0
    assert (tmp_path / "home" / "models" / "pub" / "chat-1" / MANIFEST_NAME).is_file()
    assert main([]) == 0
    assert "0 installed" in capsys.readouterr().out
