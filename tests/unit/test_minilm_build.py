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


def test_the_build_key_is_stable_and_names_the_weights():
    source = minilm.find_source()
    assert minilm.build_key(source) == minilm.build_key(source)
