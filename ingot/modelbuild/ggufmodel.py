"""A GGUF file read as a decoder: its hyperparameters, and its tensors in Hugging Face orientation.

Only what `ggufgraph` can build is accepted; anything else (another architecture, experts, a tensor the
graph would silently drop, a tensor type NumPy cannot read) is refused with an error that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader

from ingot.modelbuild import ggufblocks
from ingot.modelbuild.ggufblocks import BlockMatrix, GGUFImportError

# Architectures whose GGUF tensors map onto ggufgraph's decoder. "llama" covers the files llama.cpp writes
# for Llama 1-3, Mistral, SmolLM and their fine-tunes.
SUPPORTED_ARCHITECTURES = ("llama",)
# ggml's `tokenizer.ggml.token_type` values.
TOKEN_CONTROL = 3


@dataclass(frozen=True)
class DecoderSpec:
    architecture: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    rms_eps: float
    context_length: int
    vocab_size: int
    rope_theta: float
    rope_position_scale: float
    tied_embeddings: bool


class GGUFModel:
    """A memory-mapped GGUF file; `matrix`/`vector` hand out each tensor once and `unused` names the rest."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.reader = GGUFReader(self.path)
        except (ValueError, OSError, IndexError) as exc:
            raise GGUFImportError(f"{self.path.name} is not a readable GGUF file: {exc}") from exc
        self._tensors = {t.name: t for t in self.reader.tensors}
        self._taken: set[str] = set()
        self.architecture = str(self.field("general.architecture", ""))
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise GGUFImportError(f"{self.path.name} holds a {self.architecture or 'unnamed'!s} model; the importer "
                               f"supports the {', '.join(SUPPORTED_ARCHITECTURES)} architecture")
        self.spec = self._read_spec()
        self._check_tensor_names()
        self._check_tensor_types()

    def field(self, key: str, default: Any = None) -> Any:
        field = self.reader.fields.get(key)
        if field is None:
            return default
        return field.contents()

    def arch_field(self, key: str, default: Any = None) -> Any:
        return self.field(f"{self.architecture}.{key}", default)

    def has(self, name: str) -> bool:
        return name in self._tensors

    def matrix(self, name: str) -> BlockMatrix:
        tensor = self._take(name)
        if len(tensor.shape) != 2:
            raise GGUFImportError(f"tensor {name} has shape {list(tensor.shape)}; a matrix was expected")
        cols, rows = (int(x) for x in tensor.shape)
        return ggufblocks.from_gguf(name, GGMLQuantizationType(tensor.tensor_type), tensor.data, rows, cols)

    def vector(self, name: str) -> np.ndarray:
        tensor = self._take(name)
        size = int(np.prod(tensor.shape))
        values = ggufblocks.dequantise_tensor(name, GGMLQuantizationType(tensor.tensor_type), tensor.data, 1, size)
        return np.ascontiguousarray(values.reshape(size))

    def unused(self) -> list[str]:
        return sorted(set(self._tensors) - self._taken)

    def tensor_types(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tensor in self.reader.tensors:
            type_name = GGMLQuantizationType(tensor.tensor_type).name
            counts[type_name] = counts.get(type_name, 0) + 1
        return counts

    def _take(self, name: str):
        tensor = self._tensors.get(name)
        if tensor is None:
            raise GGUFImportError(f"{self.path.name} has no tensor {name}, which a {self.architecture} model needs")
        self._taken.add(name)
        return tensor

    def _read_spec(self) -> DecoderSpec:
        if int(self.arch_field("expert_count", 0) or 0) > 0:
            raise GGUFImportError(f"{self.path.name} is a mixture-of-experts model, which the importer does not support")

        def required(key: str) -> Any:
            value = self.arch_field(key)
            if value is None:
                raise GGUFImportError(f"{self.path.name} lacks the metadata key {self.architecture}.{key}")
            return value

        hidden = int(required("embedding_length"))
        heads = int(required("attention.head_count"))
        kv_heads = int(self.arch_field("attention.head_count_kv", heads))
        head_dim = int(self.arch_field("attention.key_length", hidden // heads))
        if int(self.arch_field("attention.value_length", head_dim)) != head_dim:
            raise GGUFImportError(f"{self.path.name} has different key and value head sizes, which the importer does "
                               "not support")
        if int(self.arch_field("rope.dimension_count", head_dim)) != head_dim:
            raise GGUFImportError(f"{self.path.name} applies rotary embeddings to part of each head, which the "
                               "importer does not support")
        scaling = str(self.arch_field("rope.scaling.type", "none"))
        factor = float(self.arch_field("rope.scaling.factor", 1.0) or 1.0)
        if scaling not in ("none", "linear") and factor != 1.0:
            raise GGUFImportError(f"{self.path.name} uses {scaling} rope scaling; the importer supports none and linear")
        tokens = self.reader.fields.get("tokenizer.ggml.tokens")
        vocab = int(self.arch_field("vocab_size", len(tokens.data) if tokens is not None else 0))
        embed = self._tensors.get("token_embd.weight")
        if embed is not None:
            vocab = int(embed.shape[1])
        return DecoderSpec(
            architecture=self.architecture,
            layers=int(required("block_count")),
            hidden=hidden,
            intermediate=int(required("feed_forward_length")),
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            rms_eps=float(self.arch_field("attention.layer_norm_rms_epsilon", 1e-5)),
            context_length=int(self.arch_field("context_length", 4096)),
            vocab_size=vocab,
            rope_theta=float(self.arch_field("rope.freq_base", 10000.0)),
            rope_position_scale=1.0 / factor if scaling == "linear" else 1.0,
            tied_embeddings="output.weight" not in self._tensors,
        )

    def _check_tensor_names(self) -> None:
        required = {"token_embd.weight", "output_norm.weight"}
        optional = {"output.weight", "rope_freqs.weight"}
        for i in range(self.spec.layers):
            required |= {f"blk.{i}.{part}.weight" for part in ("attn_norm", "attn_q", "attn_k", "attn_v",
                                                                 "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                                                                 "ffn_down")}
            optional |= {f"blk.{i}.attn_{part}.bias" for part in ("q", "k", "v", "output")}
        missing = sorted(required - set(self._tensors))
        unknown = sorted(set(self._tensors) - required - optional)
        if missing:
            raise GGUFImportError(f"{self.path.name} lacks tensors a {self.architecture} model needs: "
                                  f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unknown:
            raise GGUFImportError(f"{self.path.name} holds tensors the importer's {self.architecture} graph has no "
                                  f"place for: {', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")

    def _check_tensor_types(self) -> None:
        bad = {}
        for tensor in self.reader.tensors:
            try:
                kind = GGMLQuantizationType(tensor.tensor_type)
            except ValueError:
                bad.setdefault(f"type {int(tensor.tensor_type)}", tensor.name)
                continue
            if kind not in ggufblocks.SUPPORTED_TYPES:
                bad.setdefault(kind.name, tensor.name)
        if bad:
            named = ", ".join(f"{kind} (e.g. {name})" for kind, name in sorted(bad.items()))
            supported = ", ".join(sorted(t.name for t in ggufblocks.SUPPORTED_TYPES))
            raise GGUFImportError(f"{self.path.name} holds tensor types the importer cannot read: {named}; "
                               f"supported: {supported}")


def rope_permutation(rows: int, heads: int) -> np.ndarray:
    """The row order that undoes llama.cpp's q/k permutation (its HF→GGUF converter pairs rotary halves)."""
    return np.arange(rows).reshape(heads, rows // heads // 2, 2).transpose(0, 2, 1).reshape(rows)
