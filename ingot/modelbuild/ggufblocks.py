"""GGUF tensors as onnxruntime's block-quantised weights: Q4_0, Q4_1 and Q8_0 block for block, others re-quantised.

ggml and onnxruntime quantise the same way: blocks of 32 along a matrix row (the input dimension K), one
scale per block. What differs is only how the bytes are laid out, so the three common GGUF types carry over
without touching a single weight value:

| GGUF | ggml block | onnxruntime (`MatMulNBits`, `GatherBlockQuantized`, no zero-point input) |
|---|---|---|
| Q4_0 | `w = d·(q − 8)`, q 4-bit | bits=4; the default zero point is 8; nibbles re-packed |
| Q8_0 | `w = d·q`, q signed 8-bit | bits=8; q + 128 as uint8 against the default zero point 128 |
| Q4_1 | `w = d·q + m` | bits=4 as `d·(q − 8)` plus a per-block `mins` term `m + 8·d` (see below) |

Q4_1's zero point `−m/d` is not an integer. `MatMulNBits` accepts float zero points, but onnxruntime's CPU
kernels then dequantise the whole matrix on every call (about 50× slower than the integer path, measured
with onnxruntime 1.32). So a Q4_1 block is split exactly into an integer part with the default zero point
and a per-block offset `m + 8·d` that the graph applies as `blocksum(x) · mins` (ggufgraph.py). Both
products are exact in fp32: d and m are fp16, and 8·d is a power-of-two multiple.

Every other type is dequantised with the `gguf` package and, being a matrix, re-quantised the way the
onnxruntime-genai builder's int8 precision does it (onnxruntime's own `quantize_matmul_8bits`: symmetric,
block 32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType, GGML_QUANT_SIZES
from gguf.quants import dequantize

BLOCK = 32
EXACT_TYPES = frozenset({GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0})
# Types the gguf package can dequantise in NumPy: these import, re-quantised to 8 bits.
FLOAT_TYPES = frozenset({GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16})
DEQUANTISED_TYPES = frozenset({
    GGMLQuantizationType.Q5_0, GGMLQuantizationType.Q5_1, GGMLQuantizationType.Q2_K, GGMLQuantizationType.Q3_K,
    GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q5_K, GGMLQuantizationType.Q6_K, GGMLQuantizationType.IQ4_NL,
    GGMLQuantizationType.IQ4_XS, GGMLQuantizationType.IQ3_S, GGMLQuantizationType.IQ3_XXS,
    GGMLQuantizationType.IQ2_S, GGMLQuantizationType.IQ2_XS, GGMLQuantizationType.IQ2_XXS,
    GGMLQuantizationType.IQ1_S, GGMLQuantizationType.IQ1_M, GGMLQuantizationType.TQ1_0, GGMLQuantizationType.TQ2_0,
    GGMLQuantizationType.MXFP4,
}) | FLOAT_TYPES
SUPPORTED_TYPES = EXACT_TYPES | DEQUANTISED_TYPES


class GGUFImportError(ValueError):
    """A GGUF file the importer cannot turn into a model; the message says what and why."""


class UnsupportedTensorType(GGUFImportError):
    def __init__(self, tensor: str, type_name: str) -> None:
        supported = ", ".join(sorted(t.name for t in SUPPORTED_TYPES))
        super().__init__(f"tensor {tensor} has GGUF type {type_name}, which the importer cannot read "
                         f"(supported: {supported})")
        self.tensor = tensor
        self.type_name = type_name


@dataclass
class BlockMatrix:
    """A weight matrix `[N, K]` (rows are outputs) in onnxruntime's block layout, block size 32 along K.

    `packed` is `[N, K/32, 32·bits/8]` uint8, low nibble first for 4 bits; `scales` is `[N, K/32]`; the
    zero point is the default `2**(bits-1)`; `mins`, when set, adds `mins[n, b]` to every weight of block b
    of row n (Q4_1). `source` names the GGUF type the values came from.
    """

    bits: int
    packed: np.ndarray
    scales: np.ndarray
    mins: np.ndarray | None
    source: str

    @property
    def rows(self) -> int:
        return int(self.packed.shape[0])

    @property
    def cols(self) -> int:
        return int(self.packed.shape[1]) * BLOCK

    @property
    def exact(self) -> bool:
        return self.source in {t.name for t in EXACT_TYPES}

    def dequantise(self) -> np.ndarray:
        """The float32 matrix these blocks stand for (for tests and for the reference check)."""
        q = unpack(self.packed, self.bits).astype(np.float32) - float(2 ** (self.bits - 1))
        w = q * self.scales[..., None]
        if self.mins is not None:
            w = w + self.mins[..., None]
        return w.reshape(self.rows, self.cols)

    def take_rows(self, order: np.ndarray) -> BlockMatrix:
        """The same blocks with the rows in another order (whole rows move: no value changes)."""
        return BlockMatrix(self.bits, self.packed[order], self.scales[order],
                           None if self.mins is None else self.mins[order], self.source)


def concat_rows(parts: list[BlockMatrix]) -> BlockMatrix | None:
    """Stack matrices along N (for a fused q/k/v projection); None when their layouts differ."""
    if len({p.bits for p in parts}) != 1 or len({p.cols for p in parts}) != 1:
        return None
    with_mins = any(p.mins is not None for p in parts)
    mins = None
    if with_mins:
        mins = np.concatenate([p.mins if p.mins is not None else np.zeros_like(p.scales) for p in parts])
    return BlockMatrix(parts[0].bits, np.concatenate([p.packed for p in parts]),
                       np.concatenate([p.scales for p in parts]), mins, "+".join(sorted({p.source for p in parts})))


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """`[..., 32·bits/8]` packed bytes → `[..., 32]` unsigned values."""
    if bits == 8:
        return packed
    out = np.empty((*packed.shape[:-1], packed.shape[-1] * 2), dtype=np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out


def from_gguf(name: str, tensor_type: GGMLQuantizationType, data: np.ndarray, rows: int, cols: int) -> BlockMatrix:
    """One GGUF matrix (ggml shape `[cols, rows]`) as a BlockMatrix."""
    if tensor_type in EXACT_TYPES:
        return _carry_over(tensor_type, np.asarray(data), rows, cols)
    return requantise(dequantise_tensor(name, tensor_type, data, rows, cols), source=tensor_type.name)


def dequantise_tensor(name: str, tensor_type: GGMLQuantizationType, data: np.ndarray, rows: int,
                      cols: int) -> np.ndarray:
    """Any supported GGUF tensor as float32 `[rows, cols]` (`rows` 1 for a vector)."""
    if tensor_type not in SUPPORTED_TYPES:
        raise UnsupportedTensorType(name, getattr(tensor_type, "name", str(tensor_type)))
    if tensor_type == GGMLQuantizationType.F32:
        values = np.asarray(data, dtype=np.float32)
    else:
        values = dequantize(np.asarray(data), tensor_type).astype(np.float32, copy=False)
    return values.reshape(rows, cols)


def requantise(weight: np.ndarray, *, source: str) -> BlockMatrix:
    """float32 `[N, K]` → 8-bit symmetric blocks, onnxruntime's own quantiser (the builder's int8 rule)."""
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    n, k = weight.shape
    k_blocks = -(-k // BLOCK)
    transposed = np.zeros((k_blocks * BLOCK, n), dtype=np.float32)
    transposed[:k] = weight.T
    packed = np.zeros((n, k_blocks, BLOCK), dtype=np.uint8)
    scales = np.zeros((n, k_blocks), dtype=np.float32)
    zero_points = np.zeros((n, k_blocks), dtype=np.uint8)
    quantize_matmul_8bits(packed, transposed, scales, zero_points, BLOCK, n, k_blocks * BLOCK, True)
    return BlockMatrix(8, packed, scales, None, source)


def _carry_over(tensor_type: GGMLQuantizationType, data: np.ndarray, rows: int, cols: int) -> BlockMatrix:
    block_size, type_size = GGML_QUANT_SIZES[tensor_type]
    assert block_size == BLOCK
    blocks = np.ascontiguousarray(data, dtype=np.uint8).reshape(rows, cols // BLOCK, type_size)
    d = _fp16(blocks, 0)
    if tensor_type == GGMLQuantizationType.Q8_0:
        packed = blocks[..., 2:] ^ np.uint8(0x80)  # int8 q → q + 128
        return BlockMatrix(8, packed, d, None, tensor_type.name)
    if tensor_type == GGMLQuantizationType.Q4_0:
        return BlockMatrix(4, _repack_nibbles(blocks[..., 2:]), d, None, tensor_type.name)
    m = _fp16(blocks, 2)
    return BlockMatrix(4, _repack_nibbles(blocks[..., 4:]), d, m + np.float32(8) * d, tensor_type.name)


def _fp16(blocks: np.ndarray, offset: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[..., offset:offset + 2]).view(np.float16)[..., 0].astype(np.float32)


def _repack_nibbles(qs: np.ndarray) -> np.ndarray:
    """ggml packs element j with element j+16 in byte j; onnxruntime packs elements 2i and 2i+1 in byte i."""
    values = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)
