"""The all-MiniLM-L6-v2 recipe's cheap parts: what it copies and the config it writes for the service.
(The export itself runs in `make setup`; tests never build models.)"""

from __future__ import annotations

import json

from ingot.modelbuild import __main__ as modelbuild
from ingot.modelbuild import minilm


def test_it_is_a_default_model():
    assert ("all-minilm-l6-v2", minilm.build_minilm) in modelbuild.DEFAULT_BUILDERS


def test_the_service_config_describes_the_sentence_transformers_model(tmp_path):
    config = minilm._copy_tokenizer_and_configs(minilm.find_source(), tmp_path)
    assert json.loads((tmp_path / minilm.EMBEDDINGS_CONFIG_NAME).read_text()) == config
    assert (config["dimensions"], config["max_sequence_length"], config["pooling"]) == (384, 256, "mean")
    assert config["output"] == "sentence_embedding" and config["normalized"] is True
    assert set(config["input_type_prompts"]) == {"text", "query", "document"}


def test_the_packaged_128_token_truncation_and_padding_are_removed(tmp_path):
    minilm._copy_tokenizer_and_configs(minilm.find_source(), tmp_path)
    tokenizer = json.loads((tmp_path / "tokenizer.json").read_text())
    assert tokenizer["truncation"] is None and tokenizer["padding"] is None


def weights_of_size(folder, size: int):
    folder.mkdir()
    with open(folder / "model.safetensors", "wb") as weights:
        weights.truncate(size)
    return folder


def test_the_build_key_is_stable_and_names_the_weights(tmp_path):
    source = minilm.find_source()
    assert minilm.build_key(source) == minilm.build_key(source)
    # Other source weights (here: another size) must rebuild; the same ones elsewhere must not.
    small, same_size = weights_of_size(tmp_path / "a", 1000), weights_of_size(tmp_path / "b", 1000)
    assert minilm.build_key(small) == minilm.build_key(same_size)
    assert minilm.build_key(small) != minilm.build_key(weights_of_size(tmp_path / "c", 1001))
    assert minilm.build_key(source) != minilm.build_key(small)


def test_the_build_key_changes_with_the_recipe(tmp_path, monkeypatch):
    source = weights_of_size(tmp_path / "w", 1000)
    before = minilm.build_key(source)
    monkeypatch.setattr(minilm, "RECIPE_VERSION", minilm.RECIPE_VERSION + "+next")
    assert minilm.build_key(source) != before
