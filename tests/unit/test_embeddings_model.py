"""An embedding model's rules from its embeddings_config.json: prompts, dimensions, the config itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingot.common.errors import FailedPrecondition, InvalidArgument
from services.embeddings.model import EmbeddingModel, EmbeddingsConfig, join_prompt

CONFIG = {
    "inputs": ["input_ids", "attention_mask", "token_type_ids"], "output": "sentence_embedding", "dimensions": 8,
    "max_sequence_length": 16, "pad_token_id": 0, "vocab_size": 100, "matryoshka_dimensions": [4],
    "input_type_prompts": {"query": "query:", "document": "passage:"}, "instruction_separator": " ",
}


def model(**overrides) -> EmbeddingModel:
    config = EmbeddingsConfig.parse({**CONFIG, **overrides}, Path("embeddings_config.json"))
    return EmbeddingModel(id="m:1", config=config, tokenizer=None, session=None, prefix=[1], suffix=[2])


def test_a_prompt_is_joined_with_a_space_unless_it_ends_in_one():
    assert join_prompt("query:", "cats", " ") == "query: cats"
    assert join_prompt("query: ", "cats", " ") == "query: cats"
    assert join_prompt("", "cats", " ") == "cats"


def test_input_type_picks_its_prompt_and_an_instruction_replaces_it():
    m = model()
    assert m.prompt("query", "") == "query:"
    assert m.prompt("document", "") == "passage:"
    assert m.prompt("query", "Represent the question:") == "Represent the question:"
    assert m.prompt(None, "") == ""


def test_an_input_type_the_model_does_not_know_is_not_supported():
    with pytest.raises(InvalidArgument) as caught:
        model().prompt("text", "")
    assert (caught.value.param, caught.value.code) == ("input_type", "parameter_not_supported")


def test_dimensions_the_model_was_trained_for_cut_and_renormalise():
    m = model()
    assert m.check_dimensions(None) is None and m.check_dimensions(8) is None
    assert m.check_dimensions(4) == 4
    vectors = np.full((2, 8), 1 / np.sqrt(8), dtype=np.float32)
    cut = m.shorten(vectors, 4)
    assert cut.shape == (2, 4) and np.allclose(np.linalg.norm(cut, axis=1), 1)
    with pytest.raises(InvalidArgument) as caught:
        m.check_dimensions(5)
    assert caught.value.param == "dimensions" and "4" in caught.value.message


def test_the_content_window_leaves_room_for_special_tokens():
    assert model().content_window == 14


@pytest.mark.parametrize("broken", [
    {"dimensions": None}, {"inputs": ["pixel_values"]}, {"max_sequence_length": 2}, {"output": None, "inputs": 3},
])
def test_a_broken_config_is_a_failed_precondition(broken):
    data = {**CONFIG, **broken}
    data = {key: value for key, value in data.items() if value is not None}
    with pytest.raises(FailedPrecondition):
        EmbeddingsConfig.parse(data, Path("embeddings_config.json"))
