"""Embedding vectors in the encodings clients ask for.

- `float`: JSON numbers.
- `base64`: the float32 values, little-endian, base64-encoded (OpenAI's format; the `openai` SDK asks
  for it by default and decodes it itself).
- `int8` / `uint8`: scalar quantisation with one fixed scale, `round(x * 127)` clipped to [-127, 127],
  and that plus 128 for `uint8`. A fixed scale keeps a vector independent of whatever else was in the
  request (range calibration over a batch would not) and keeps dot products comparable across requests;
  127 is the widest that never clips a unit-length vector.
- `binary` / `ubinary`: one bit per dimension (1 where the value is > 0), packed eight to a byte, most
  significant bit first; `ubinary` gives the bytes as 0..255, `binary` as the byte minus 128 (-128..127),
  as Cohere's embed models on Azure and sentence-transformers' `quantize_embeddings` define them.
  A vector of d dimensions becomes ceil(d / 8) numbers.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import numpy as np

INT8_SCALE = 127.0


def vectors(embeddings: Iterable[Any]) -> np.ndarray:
    """The float32 [n, d] matrix of a service reply's `embeddings`."""
    rows = [np.asarray(embedding.values, dtype=np.float32) for embedding in embeddings]
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def int8(matrix: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(matrix * INT8_SCALE), -INT8_SCALE, INT8_SCALE).astype(np.int8)


def ubinary(matrix: np.ndarray) -> np.ndarray:
    return np.packbits(matrix > 0, axis=1)


def encode(matrix: np.ndarray, encoding_format: str) -> list[Any]:
    """One JSON value per row of `matrix` in the given format."""
    if encoding_format == "float":
        return matrix.astype(np.float64).tolist()
    if encoding_format == "base64":
        little = matrix.astype("<f4", copy=False)
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    if encoding_format == "int8":
        return int8(matrix).tolist()
    if encoding_format == "uint8":
        return (int8(matrix).astype(np.int16) + 128).astype(np.uint8).tolist()
    if encoding_format == "ubinary":
        return ubinary(matrix).tolist()
    if encoding_format == "binary":
        return (ubinary(matrix).astype(np.int16) - 128).astype(np.int8).tolist()
    raise ValueError(f"unknown encoding format {encoding_format!r}")
