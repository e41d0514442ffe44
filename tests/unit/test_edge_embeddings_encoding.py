"""Vectors in each encoding a client may ask for, and what each encoding keeps of the float vector."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from edge.openai.embeddings_encoding import encode


def unit_rows(n: int = 3, d: int = 384, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_float_is_the_exact_float32_values():
    rows = unit_rows()
    assert np.array_equal(np.array(encode(rows, "float"), dtype=np.float32), rows)


def test_base64_is_little_endian_float32():
    rows = unit_rows()
    decoded = [np.frombuffer(base64.b64decode(text), dtype="<f4") for text in encode(rows, "base64")]
    assert np.array_equal(np.stack(decoded), rows)


def test_int8_uses_one_fixed_scale_and_never_clips_a_unit_vector():
    rows = np.array([[1.0, -1.0, 0.5, -0.004, 0.0]], dtype=np.float32)
    assert encode(rows, "int8") == [[127, -127, 64, -1, 0]]
    assert encode(rows, "uint8") == [[255, 1, 192, 127, 128]]


def test_int8_keeps_the_direction_of_a_real_sized_vector():
    rows = unit_rows()
    quantised = np.array(encode(rows, "int8"), dtype=np.float32)
    cosine = (quantised * rows).sum(axis=1) / np.linalg.norm(quantised, axis=1)
    assert cosine.min() > 0.99


def test_binary_packs_sign_bits_most_significant_first():
    rows = np.array([[0.1, -0.1, 0.2, 0.0, -0.3, 0.4, 0.5, -0.6, 0.7, 0.1]], dtype=np.float32)
    # Bits 1,0,1,0,0,1,1,0 | 1,1 (padded with zeros) → 0b10100110 = 166, 0b11000000 = 192.
    assert encode(rows, "ubinary") == [[166, 192]]
    assert encode(rows, "binary") == [[166 - 128, 192 - 128]]


def test_a_row_encodes_the_same_whatever_else_is_in_the_request():
    rows = unit_rows(4)
    for fmt in ("float", "base64", "int8", "uint8", "binary", "ubinary"):
        assert encode(rows, fmt)[2] == encode(rows[2:3], fmt)[0], fmt


def test_an_unknown_format_is_a_bug_not_a_silent_default():
    with pytest.raises(ValueError):
        encode(unit_rows(), "float16")
