"""A model's tokenizer files are found and read the way transformers finds and reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from services.tokenizer.modelfiles import ModelFilesError, load, special_tokens, templates_from_config


def write_tokenizer(folder: Path, *, truncate_to: int | None = None) -> None:
    vocab = {"[UNK]": 0, "a": 1, "b": 2, "c": 3, "d": 4}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if truncate_to is not None:
        tokenizer.enable_truncation(truncate_to)
        tokenizer.enable_padding(length=8)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))


def test_special_tokens_are_read_as_text_or_as_serialized_added_tokens():
    config = {"bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": False}, "pad_token": None,
              "additional_special_tokens": ["<x>"], "model_max_length": 8192}
    assert special_tokens(config) == {"bos_token": "<s>", "eos_token": "</s>"}


def test_a_single_template_in_the_config_is_the_default():
    assert templates_from_config({"chat_template": "T"}) == {"default": "T"}


def test_named_templates_in_the_config_are_kept_by_name():
    config = {"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"},
                                {"name": "broken"}]}
    assert templates_from_config(config) == {"default": "D", "tool_use": "T"}


def test_the_tool_use_template_is_chosen_only_when_tools_are_given(tmp_path):
    write_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}))
    model = load(tmp_path)
    assert model.template_source(with_tools=False) == "D"
    assert model.template_source(with_tools=True) == "T"


def test_chat_template_jinja_wins_over_the_config(tmp_path):
    write_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "old", "eos_token": "</s>"}))
    (tmp_path / "chat_template.jinja").write_text("new")
    model = load(tmp_path)
    assert model.template_source(with_tools=False) == "new"
    assert model.special_tokens == {"eos_token": "</s>"}


def test_a_model_without_any_template_has_none(tmp_path):
    write_tokenizer(tmp_path)
    assert load(tmp_path).template_source(with_tools=True) is None


def test_truncation_and_padding_from_training_are_switched_off(tmp_path):
    write_tokenizer(tmp_path, truncate_to=2)
    assert load(tmp_path).tokenizer.encode("a b c d").ids == [1, 2, 3, 4]


def test_a_folder_without_tokenizer_json_is_an_error(tmp_path):
    with pytest.raises(ModelFilesError, match="tokenizer.json"):
        load(tmp_path)


def test_a_tokenizer_config_that_is_not_an_object_is_an_error(tmp_path):
    write_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[]")
    with pytest.raises(ModelFilesError, match="tokenizer_config.json"):
        load(tmp_path)
