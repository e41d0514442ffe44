"""An embedding model as the service holds it: its onnxruntime session, its tokenizer, and the rules of its
`embeddings_config.json` (window, prompts, dimensions).

Pooling and normalisation are inside the graph; this module tokenizes, pads and runs. Padding never
changes a row's vector: the graph's attention and its mean pooling both respect the attention mask.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingot.common.errors import FailedPrecondition, InvalidArgument

CONFIG_NAME = "embeddings_config.json"
# The code a client can act on, shared with the edge, which turns it into Azure's 422.
NOT_SUPPORTED = "parameter_not_supported"
TOO_LONG = "context_length_exceeded"


@dataclass(frozen=True)
class EmbeddingsConfig:
    inputs: tuple[str, ...]
    output: str
    dimensions: int
    max_sequence_length: int
    pad_token_id: int
    vocab_size: int
    # Prompt per input type ("text", "query", "document"); a type the model does not know is not listed.
    input_type_prompts: Mapping[str, str]
    instruction_separator: str = " "
    matryoshka_dimensions: tuple[int, ...] = ()
    normalized: bool = True
    modalities: tuple[str, ...] = ("text",)

    @classmethod
    def parse(cls, data: Any, where: Path) -> EmbeddingsConfig:
        try:
            config = cls(
                inputs=tuple(data["inputs"]), output=str(data["output"]), dimensions=int(data["dimensions"]),
                max_sequence_length=int(data["max_sequence_length"]), pad_token_id=int(data["pad_token_id"]),
                vocab_size=int(data["vocab_size"]),
                input_type_prompts=dict(data.get("input_type_prompts", {"text": ""})),
                instruction_separator=str(data.get("instruction_separator", " ")),
                matryoshka_dimensions=tuple(int(d) for d in data.get("matryoshka_dimensions", ())),
                normalized=bool(data.get("normalized", True)), modalities=tuple(data.get("modalities", ("text",))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FailedPrecondition(f"{where} is not a valid embeddings config: {exc!r}", param="model") from None
        if not {"input_ids", "attention_mask"} <= set(config.inputs) or config.max_sequence_length < 3:
            raise FailedPrecondition(f"{where} describes a graph this service cannot feed", param="model")
        return config


def join_prompt(prompt: str, text: str, separator: str) -> str:
    """`prompt` before `text`, with the separator unless the prompt already ends in whitespace."""
    if not prompt:
        return text
    return prompt + ("" if prompt[-1].isspace() else separator) + text


@dataclass
class Encoded:
    """One input as token ids the graph takes, special tokens included."""

    ids: list[int]
    truncated: bool


@dataclass
class EmbeddingModel:
    id: str
    config: EmbeddingsConfig
    tokenizer: Any
    session: Any
    # The special tokens the tokenizer puts around one sequence ([CLS] ... [SEP] for BERT).
    prefix: list[int]
    suffix: list[int]
    loaded_at: float = field(default_factory=time.time)
    embedded_inputs: int = 0
    batches: int = 0

    @property
    def content_window(self) -> int:
        return self.config.max_sequence_length - len(self.prefix) - len(self.suffix)

    def prompt(self, input_type: str | None, instruction: str) -> str:
        """What goes before every input: the instruction when given, else the input type's prompt."""
        prompts = self.config.input_type_prompts
        if input_type is not None and input_type not in prompts:
            known = ", ".join(sorted(prompts)) or "none"
            raise InvalidArgument(f"Model '{self.id}' does not support input_type '{input_type}' (it supports: "
                                  f"{known}).", param="input_type", code=NOT_SUPPORTED)
        if instruction:
            return instruction
        return prompts.get(input_type or "text", "")

    def check_dimensions(self, dimensions: int | None) -> int | None:
        """The size to cut vectors to, or None to keep the model's own."""
        if dimensions is None or dimensions == self.config.dimensions:
            return None
        if dimensions in self.config.matryoshka_dimensions:
            return dimensions
        others = ", ".join(map(str, self.config.matryoshka_dimensions))
        also = f" or one of {others}" if others else ""
        raise InvalidArgument(f"Model '{self.id}' does not support dimensions={dimensions}: its embeddings have "
                              f"{self.config.dimensions} dimensions{also}.", param="dimensions", code=NOT_SUPPORTED)

    def encode(self, inputs: Sequence[str | Sequence[int]], prompt: str, *, fail_on_overflow: bool) -> list[Encoded]:
        """Token ids for each input (text or ids without special tokens), cut to the window or refused."""
        texts = [(i, join_prompt(prompt, item, self.config.instruction_separator))
                 for i, item in enumerate(inputs) if isinstance(item, str)]
        content: list[list[int]] = [[] for _ in inputs]
        if texts:
            for (index, _), encoding in zip(texts, self.tokenizer.encode_batch([t for _, t in texts],
                                                                               add_special_tokens=False), strict=True):
                content[index] = encoding.ids
        prompt_ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids if prompt else []
        for index, item in enumerate(inputs):
            if not isinstance(item, str):
                self._check_ids(index, item)
                content[index] = [*prompt_ids, *item]
        window = self.content_window
        encoded = []
        for index, ids in enumerate(content):
            if len(ids) > window and fail_on_overflow:
                raise InvalidArgument(
                    f"Input {index} is {len(ids) + len(self.prefix) + len(self.suffix)} tokens long, but model "
                    f"'{self.id}' reads at most {self.config.max_sequence_length} tokens; shorten it, or allow "
                    "truncation.", param="input", code=TOO_LONG)
            encoded.append(Encoded([*self.prefix, *ids[:window], *self.suffix], truncated=len(ids) > window))
        return encoded

    def _check_ids(self, index: int, ids: Sequence[int]) -> None:
        vocab = self.config.vocab_size
        if any(not 0 <= token < vocab for token in ids):
            bad = next(token for token in ids if not 0 <= token < vocab)
            raise InvalidArgument(f"Input {index} holds token id {bad}, outside model '{self.id}''s vocabulary of "
                                  f"{vocab}.", param="input")

    def run(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """One padded onnxruntime run: a float32 [len(rows), dimensions] array. Releases the GIL while it runs."""
        width = max(map(len, rows))
        input_ids = np.full((len(rows), width), self.config.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for index, ids in enumerate(rows):
            input_ids[index, :len(ids)] = ids
            attention_mask[index, :len(ids)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.config.inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        (vectors,) = self.session.run([self.config.output], feeds)
        return vectors

    def shorten(self, vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
        """Matryoshka truncation: the leading dimensions, renormalised when the model normalises."""
        if dimensions is None:
            return vectors
        cut = vectors[:, :dimensions]
        if self.config.normalized:
            cut = cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
        return cut


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer's post-processor adds around one sequence, found by comparing one encoding."""
    plain = tokenizer.encode("a", add_special_tokens=False).ids
    full = tokenizer.encode("a", add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    raise FailedPrecondition("the tokenizer's special tokens could not be told apart from the text", param="model")


def session_options(*, intra_op_threads: int = 0, spin_wait: bool = False) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # One run at a time per model (the batcher's thread), so inter-op parallelism would only add threads.
    options.inter_op_num_threads = 1
    # Spinning threads burn the cores that the edge and the gRPC loop need between runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
    return options


def load(model_id: str, folder: Path, *, intra_op_threads: int = 0, spin_wait: bool = False) -> EmbeddingModel:
    """Loads the folder the registry named. Slow (the session builds its graph): run it off the event loop."""
    import onnxruntime
    from tokenizers import Tokenizer

    config_path = folder / CONFIG_NAME
    try:
        config = EmbeddingsConfig.parse(json.loads(config_path.read_text(encoding="utf-8")), config_path)
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"The model '{model_id}' has no readable {CONFIG_NAME} in {folder}: {exc}",
                                 param="model") from None
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # Padding and truncation are this module's job (per batch, and with the overflow rule).
    tokenizer.no_padding()
    tokenizer.no_truncation()
    options = session_options(intra_op_threads=intra_op_threads, spin_wait=spin_wait)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    prefix, suffix = _special_tokens(tokenizer)
    return EmbeddingModel(id=model_id, config=config, tokenizer=tokenizer, session=session, prefix=prefix,
                          suffix=suffix)
