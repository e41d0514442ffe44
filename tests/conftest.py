"""Fixtures every layer shares: where the built default models are."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

SMOLLM2_ID = "SmolLM2-135M-Instruct-generic-cpu:1"
SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_EXACT_ID = "SmolLM2-135M-Instruct-exact-generic-cpu:1"
SMOLLM2_EXACT_ALIAS = "smollm2-135m-instruct-exact"
# Only what a tokenizer needs: copying these makes a cache that lists the model without its weights.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "genai_config.json",
                   "inference_model.json")


@pytest.fixture(scope="session")
def ingot_home() -> Path:
    """The home `make setup` built the default models into (tests never build models themselves)."""
    return Path(os.environ.get("INGOT_HOME", "~/.ingot")).expanduser()


def _built(ingot_home: Path, name: str) -> Path:
    for manifest in (ingot_home / "models").glob("*/*/inference_model.json"):
        if json.loads(manifest.read_text()).get("Name") == name:
            return manifest.parent
    pytest.fail(f"{name} is not built under {ingot_home}/models: run `make setup` first")


@pytest.fixture(scope="session")
def smollm2_dir(ingot_home: Path) -> Path:
    """The default chat model: SmolLM2's GGUF with int8 activations."""
    return _built(ingot_home, SMOLLM2_ID)


@pytest.fixture(scope="session")
def smollm2_exact_dir(ingot_home: Path) -> Path:
    """The same GGUF with fp32 activations, whose answers do not depend on how steps are batched or cut."""
    return _built(ingot_home, SMOLLM2_EXACT_ID)


@pytest.fixture()
def tokenizer_only_home(tmp_path: Path, smollm2_dir: Path) -> Path:
    """A home whose cache holds SmolLM2's tokenizer and manifest but no weights."""
    target = tmp_path / "home" / "models" / smollm2_dir.parent.name / smollm2_dir.name
    target.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (smollm2_dir / name).exists():
            shutil.copy2(smollm2_dir / name, target / name)
    return tmp_path / "home"


MINILM_ID = "all-MiniLM-L6-v2-generic-cpu:1"
MINILM_ALIAS = "all-minilm-l6-v2"
MINILM_REFERENCE = Path(__file__).parent / "data" / "all_minilm_l6_v2_reference.json"


@pytest.fixture(scope="session")
def minilm_dir(ingot_home: Path) -> Path:
    return _built(ingot_home, MINILM_ID)


@pytest.fixture(scope="session")
def minilm_reference() -> dict:
    """sentence-transformers' vectors for fixed sentences (see tests/data/make_minilm_reference.py)."""
    return json.loads(MINILM_REFERENCE.read_text(encoding="utf-8"))
