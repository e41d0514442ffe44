"""A chat model as the engine thread holds it: onnxruntime-genai's Model and Tokenizer plus what the
registry said about it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime_genai as og

from ingot.common.errors import FailedPrecondition
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from services.inference.tokenbytes import load_token_bytes


@dataclass
class LoadedModel:
    info: registry_pb.ModelInfo
    model: og.Model
    tokenizer: og.Tokenizer
    eos_token_ids: frozenset[int]
    # Control tokens (<|im_start|>, ...): onnxruntime-genai's TokenizerStream would return their literal
    # text, which must never reach a client's content.
    special_token_ids: frozenset[int]
    vocab_size: int
    # Each token's UTF-8 bytes, for logprobs.
    token_bytes: list[bytes]
    loaded_at: float = field(default_factory=time.time)
    # Written by the engine thread only; read by the event loop for ListLoadedModels.
    active_sequences: int = 0
    generated_tokens: int = 0

    @property
    def id(self) -> str:
        return self.info.id


def load(info: registry_pb.ModelInfo) -> LoadedModel:
    """Loads the model folder the registry named. Runs on the engine thread (og.Model holds the GIL)."""
    path = Path(info.path)
    config_file = path / "genai_config.json"
    if not config_file.is_file():
        raise FailedPrecondition(f"The model '{info.id}' has no genai_config.json in {path}.", param="model")
    genai = json.loads(config_file.read_text())
    vocab_size = int(genai["model"]["vocab_size"])
    config = og.Config(str(path))
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)
    return LoadedModel(
        info=info,
        model=model,
        tokenizer=tokenizer,
        eos_token_ids=frozenset(int(t) for t in tokenizer.eos_token_ids),
        special_token_ids=_special_token_ids(path / "tokenizer.json"),
        vocab_size=vocab_size,
        token_bytes=load_token_bytes(path / "tokenizer.json", vocab_size),
    )


def _special_token_ids(tokenizer_file: Path) -> frozenset[int]:
    if not tokenizer_file.is_file():
        return frozenset()
    added = json.loads(tokenizer_file.read_text()).get("added_tokens", [])
    return frozenset(int(token["id"]) for token in added if token.get("special"))
