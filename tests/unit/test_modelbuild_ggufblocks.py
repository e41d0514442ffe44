"""GGUF tensors become onnxruntime block layouts: the carried types without changing a value, others close."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

from ingot.modelbuild.ggufblocks import BlockMatrix, UnsupportedTensorType, concat_rows, from_gguf
from ingot.modelbuild.ggufmodel import rope_permutation

ROWS, COLS = 48, 96


def weights(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((ROWS, COLS)).astype(np.float32)


def onnxruntime_matmul(matrix: BlockMatrix, x: np.ndarray, accuracy_level: int) -> np.ndarray:
    """`x · Wᵀ` through onnxruntime's MatMulNBits with the blocks as given (plus the Q4_1 mins term)."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("MatMulNBits", ["x", "b", "s"], ["y"], domain="com.microsoft", K=matrix.cols,
                            N=matrix.rows, bits=matrix.bits, block_size=32, accuracy_level=accuracy_level)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, COLS])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, ROWS])],
                              [numpy_helper.from_array(matrix.packed, "b"),
                               numpy_helper.from_array(matrix.scales.reshape(-1), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x})[0]
    if matrix.mins is not None:
        y = y + x.reshape(len(x), -1, 32).sum(-1) @ matrix.mins.T
    return y


@pytest.mark.parametrize("kind", [T.Q4_0, T.Q4_1, T.Q8_0], ids=lambda t: t.name)
def test_carried_types_keep_every_weight_value_of_the_gguf(kind):
    raw = quantize(weights(), kind)
    matrix = from_gguf("w", kind, raw, ROWS, COLS)
    assert matrix.exact and matrix.bits == (8 if kind == T.Q8_0 else 4)
    assert np.array_equal(matrix.dequantise(), dequantize(raw, kind).reshape(ROWS, COLS))


@pytest.mark.parametrize("kind", [T.Q4_0, T.Q4_1, T.Q8_0], ids=lambda t: t.name)
def test_matmulnbits_reads_the_carried_blocks_as_the_gguf_values(kind):
    raw = quantize(weights(), kind)
    matrix = from_gguf("w", kind, raw, ROWS, COLS)
    x = np.random.default_rng(1).standard_normal((3, COLS)).astype(np.float32)
    expected = x.astype(np.float64) @ dequantize(raw, kind).reshape(ROWS, COLS).T.astype(np.float64)
    # Level 1 for 4 bits keeps fp32 activations: only float rounding is left. 8-bit weights have no such
    # kernel that is not a whole-matrix dequantisation, so check them at level 4 with int8 activations.
    got = onnxruntime_matmul(matrix, x, 1 if matrix.bits == 4 else 4)
    tolerance = 1e-4 if matrix.bits == 4 else 2e-2
    assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()


@pytest.mark.parametrize("kind", [T.F32, T.F16, T.BF16, T.Q5_0, T.Q5_1], ids=lambda t: t.name)
def test_other_types_are_requantised_to_8_bits_close_to_their_values(kind):
    source = weights()
    raw = source if kind == T.F32 else quantize(source, kind)
    values = source if kind == T.F32 else dequantize(raw, kind).reshape(ROWS, COLS)
    matrix = from_gguf("w", kind, raw, ROWS, COLS)
    assert (matrix.bits, matrix.mins, matrix.exact, matrix.source) == (8, None, False, kind.name)
    # Symmetric 8-bit blocks (onnxruntime's quantiser, as the builder's int8): within a step, max |w| / 127.
    step = np.abs(values).reshape(ROWS, -1, 32).max(-1) / 127
    assert (np.abs(matrix.dequantise() - values).reshape(ROWS, -1, 32) <= step[..., None] + 1e-6).all()


def test_an_unsupported_type_names_the_tensor_and_the_type():
    with pytest.raises(UnsupportedTensorType) as caught:
        from_gguf("blk.0.ffn_up.weight", T.I32, np.zeros((ROWS, COLS), np.int32), ROWS, COLS)
    assert "blk.0.ffn_up.weight" in str(caught.value) and "I32" in str(caught.value)


def test_the_rope_permutation_undoes_what_llama_cpps_converter_does():
    heads, head_dim = 3, 8
    rows = np.arange(heads * head_dim)
    # convert_hf_to_gguf.py's LlamaModel.permute: pairs each rotary half's rows for adjacent-pair rotation.
    gguf_order = rows.reshape(heads, 2, head_dim // 2).swapaxes(1, 2).reshape(-1)
    assert np.array_equal(gguf_order[rope_permutation(len(rows), heads)], rows)


def test_q_k_and_v_fuse_only_when_their_layouts_match_and_missing_mins_count_as_zero():
    q4_0 = from_gguf("q", T.Q4_0, quantize(weights(1), T.Q4_0), ROWS, COLS)
    q4_1 = from_gguf("k", T.Q4_1, quantize(weights(2), T.Q4_1), ROWS, COLS)
    q8_0 = from_gguf("v", T.Q8_0, quantize(weights(3), T.Q8_0), ROWS, COLS)
    assert concat_rows([q4_0, q8_0]) is None
    fused = concat_rows([q4_0, q4_1])
    assert np.array_equal(fused.dequantise(), np.concatenate([q4_0.dequantise(), q4_1.dequantise()]))
    assert not fused.mins[:ROWS].any()
