"""The ONNX decoder onnxruntime-genai runs, built from a GGUF file's block-quantised tensors.

The graph follows the one onnxruntime-genai's builder makes for a llama model on CPU (same operators, inputs,
outputs and initialiser names), so onnxruntime-genai runs it as it runs the builder's models: token embedding,
per layer SimplifiedLayerNormalization → fused q/k/v MatMulNBits → GroupQueryAttention (rotary inside, KV
cache in and out) → o_proj → SkipSimplifiedLayerNormalization → SiLU-gated MLP, then the final norm and the
lm_head. What differs is where the weights come from: each MatMulNBits and the embedding's
GatherBlockQuantized take GGUF blocks as they are (ggufblocks.py). Two changes serve Q4_1, whose per-block
minimum is added as `blocksum(x) · mins` (one Reshape+ReduceSum per distinct input, one small MatMul and an
Add per projection): the MLP's gate and up projections are fused into one MatMulNBits and a Split, so a
layer pays that term four times rather than five.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ingot.modelbuild.ggufblocks import BLOCK, BlockMatrix, concat_rows
from ingot.modelbuild.ggufmodel import DecoderSpec, GGUFImportError, GGUFModel, rope_permutation

OPSET = 21
DATA_FILE = "model.onnx.data"
# Initialisers below this many bytes stay inside model.onnx (onnxruntime's shape inference reads constants).
_INLINE_BYTES = 1024
_ALIGN = 64
# How many of the most likely logits an int8-activation lm_head recomputes in fp32 (Graph.lm_head).
RESCORED = 8


class Accuracy:
    """How MatMulNBits computes (its `accuracy_level`): 1 keeps the activations in fp32, 4 quantises them to
    int8 per block of 32 first, the arithmetic llama.cpp uses for these types.

    - fp32 (the default): fp32 activations for 4-bit matrices, so the imported model reproduces the GGUF's
      fp32 dequantisation (SmolLM2: top-1 100 % on the quality test, mean KL 0.00015). onnxruntime 1.32 has
      no fp32-activation kernel for 8-bit weights (it dequantises the whole matrix on every call, ~90x
      slower), so 8-bit matrices stay at level 4; an 8-bit lm_head then has its top logits recomputed
      exactly (`_Graph.lm_head`).
    - int8: level 4 everywhere, llama.cpp's arithmetic: on SmolLM2 about 1.5x faster at decode, and less
      faithful (top-1 97.5 %, mean KL 0.004).
    - exact: level 1 everywhere, 8-bit matrices included: slow, for checking an import against a reference.
    """

    FP32 = "fp32"
    INT8 = "int8"
    EXACT = "exact"
    CHOICES = (FP32, INT8, EXACT)

    @staticmethod
    def level(accuracy: str, bits: int) -> int:
        if accuracy not in Accuracy.CHOICES:
            raise ValueError(f"accuracy must be one of {', '.join(Accuracy.CHOICES)}, not {accuracy!r}")
        if accuracy == Accuracy.EXACT or (accuracy == Accuracy.FP32 and bits == 4):
            return 1
        return 4


class _Graph:
    def __init__(self, accuracy: str, data_path: Path) -> None:
        self.accuracy = accuracy
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._constants: dict[tuple, str] = {}
        self._blocksums: dict[str, str] = {}
        self._tables: dict[str, tuple[str, str, str | None]] = {}
        self._data_path = data_path
        self._data = open(data_path, "wb")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        self._data.flush()
        os.fsync(self._data.fileno())
        self._data.close()

    def init(self, name: str, array: np.ndarray) -> str:
        """An initialiser; large ones go straight to the data file, so a model of any size is never whole in
        memory (and never meets protobuf's 2 GB limit)."""
        array = np.ascontiguousarray(array)
        if array.nbytes < _INLINE_BYTES:
            self.initializers.append(numpy_helper.from_array(array, name))
            return name
        offset = -self._data.tell() % _ALIGN
        self._data.write(b"\0" * offset)
        start = self._data.tell()
        self._data.write(array.tobytes())
        tensor = onnx.TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype),
                                  dims=list(array.shape), data_location=onnx.TensorProto.EXTERNAL)
        for key, value in (("location", self._data_path.name), ("offset", str(start)), ("length", str(array.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self.initializers.append(tensor)
        return name

    def const(self, values: list[int]) -> str:
        key = tuple(values)
        if key not in self._constants:
            self._constants[key] = self.init(f"/model/constants/INT64/{list(values)}", np.array(values, np.int64))
        return self._constants[key]

    def node(self, op: str, inputs: list[str], name: str, *, outputs: int | list[str] = 1, domain: str = "",
             **attrs) -> list[str]:
        names = outputs if isinstance(outputs, list) else [f"{name}/output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=name, domain=domain or None, **attrs))
        return names

    def one(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        return self.node(op, inputs, name, **attrs)[0]

    def linear(self, name: str, x: str, weight: BlockMatrix, *, bias: np.ndarray | None = None,
               output: str | None = None) -> str:
        """`x · Wᵀ (+ bias)` with W in GGUF blocks; `name` is the builder's, e.g. `/model/layers.0/attn/o_proj`."""
        param = name.strip("/").replace("/", ".")
        inputs = [x,
                  self.init(f"{param}.MatMul.weight_Q{weight.bits}", weight.packed),
                  self.init(f"{param}.MatMul.weight_scales", weight.scales.reshape(-1))]
        if bias is not None:
            inputs += ["", "", self.init(f"{param}.Add.bias", bias.astype(np.float32))]
        attrs = dict(K=weight.cols, N=weight.rows, bits=weight.bits, block_size=BLOCK,
                     accuracy_level=Accuracy.level(self.accuracy, weight.bits))
        if weight.mins is None:
            outputs = [output] if output else 1
            return self.node("MatMulNBits", inputs, f"{name}/MatMul_Q{weight.bits}", outputs=outputs,
                             domain="com.microsoft", **attrs)[0]
        product = self.one("MatMulNBits", inputs, f"{name}/MatMul_Q{weight.bits}", domain="com.microsoft", **attrs)
        mins = self.init(f"{param}.MatMul.weight_mins", weight.mins.T)
        offset = self.one("MatMul", [self.blocksum(x, weight.cols), mins], f"{name}/mins/MatMul")
        return self.node("Add", [product, offset], f"{name}/mins/Add", outputs=[output] if output else 1)[0]

    def blocksum(self, x: str, cols: int) -> str:
        """`x` summed over each block of 32 along its last axis: `[..., K]` → `[..., K/32]`, once per input."""
        if x not in self._blocksums:
            name = f"{x.rsplit('/output_', 1)[0]}/blocksum"
            blocks = self.one("Reshape", [x, self.const([0, 0, cols // BLOCK, BLOCK])], f"{name}/Reshape")
            self._blocksums[x] = self.one("ReduceSum", [blocks, self.const([-1])], f"{name}/ReduceSum", keepdims=0)
        return self._blocksums[x]

    def rows(self, table: BlockMatrix, param: str, ids: str, name: str, ids_rank: int) -> str:
        """Rows `ids` of `table` dequantised exactly: `[*ids.shape, K]`. Tables are stored once per `param`, so
        the embedding and a tied lm_head share theirs."""
        if param not in self._tables:
            self._tables[param] = (self.init(f"{param}.weight_Q", table.packed.reshape(table.rows, -1)),
                                   self.init(f"{param}.weight_scales", table.scales),
                                   None if table.mins is None else self.init(f"{param}.weight_mins", table.mins))
        data, scales, mins = self._tables[param]
        gathered = self.one("GatherBlockQuantized", [data, ids, scales], f"{name}/GatherBlockQuantized",
                            domain="com.microsoft", bits=table.bits, block_size=BLOCK, gather_axis=0, quantize_axis=1)
        if mins is None:
            return gathered
        keep = [0] * ids_rank
        offsets = self.one("Unsqueeze", [self.one("Gather", [mins, ids], f"{name}/mins/Gather"), self.const([-1])],
                           f"{name}/mins/Unsqueeze")
        blocks = self.one("Reshape", [gathered, self.const(keep + [table.cols // BLOCK, BLOCK])], f"{name}/mins/Reshape")
        added = self.one("Add", [blocks, offsets], f"{name}/mins/Add")
        return self.one("Reshape", [added, self.const(keep + [table.cols])], f"{name}/mins/Reshape_1")

    def lm_head(self, hidden: str, head: BlockMatrix, param: str) -> str:
        """The logits. Where the lm_head's MatMulNBits quantises its input to int8, the RESCORED most likely
        logits are then recomputed in fp32 from the same blocks, which costs a TopK and a few rows' dot
        products: near-ties among the top tokens (where int8 activations flip the argmax) come out as the
        GGUF's fp32 model has them, and the rest of the distribution keeps the fast kernel's values."""
        if Accuracy.level(self.accuracy, head.bits) != 4:
            return self.linear("/lm_head", hidden, head, output="logits")
        name = "/lm_head/rescore"
        approx = self.linear("/lm_head", hidden, head)
        _, top = self.node("TopK", [approx, self.const([RESCORED])], f"{name}/TopK", outputs=2, axis=-1,
                           largest=1, sorted=0)
        rows = self.rows(head, param, top, name, ids_rank=3)
        column = self.one("Unsqueeze", [hidden, self.const([-1])], f"{name}/Unsqueeze")
        exact = self.one("Squeeze", [self.one("MatMul", [rows, column], f"{name}/MatMul"), self.const([-1])],
                         f"{name}/Squeeze")
        return self.node("ScatterElements", [approx, top, exact], f"{name}/ScatterElements", outputs=["logits"],
                         axis=-1)[0]


def write_decoder(model: GGUFModel, folder: Path, *, accuracy: str = Accuracy.FP32,
                  log: Callable[[str], None] = lambda message: None) -> Path:
    """Write `model.onnx` and `model.onnx.data` for the GGUF's decoder into `folder`; returns model.onnx."""
    Accuracy.level(accuracy, 4)
    g = _Graph(accuracy, Path(folder) / DATA_FILE)
    try:
        proto = _build(g, model, log)
    finally:
        g.close()
    target = Path(folder) / "model.onnx"
    onnx.save_model(proto, target)
    return target


def _build(g: _Graph, model: GGUFModel, log: Callable[[str], None]) -> onnx.ModelProto:
    spec = model.spec

    mask_sum = g.one("ReduceSum", ["attention_mask", g.const([1])],
                     "/model/attn_mask_reformat/attn_mask_subgraph/ReduceSum", keepdims=0)
    last = g.one("Sub", [mask_sum, g.const([1])], "/model/attn_mask_reformat/attn_mask_subgraph/Sub")
    seqlens_k = g.one("Cast", [last], "/model/attn_mask_reformat/attn_mask_subgraph/Sub/Cast", to=TensorProto.INT32)
    shape = g.one("Shape", ["attention_mask"], "/model/attn_mask_reformat/attn_mask_subgraph/Shape")
    total = g.one("Gather", [shape, g.init("/model/constants/INT64/1", np.array(1, np.int64))],
                  "/model/attn_mask_reformat/attn_mask_subgraph/Gather", axis=0)
    total_len = g.one("Cast", [total], "/model/attn_mask_reformat/attn_mask_subgraph/Gather/Cast", to=TensorProto.INT32)
    cos, sin = _rotary_caches(model, spec)
    g.init("cos_cache", cos)
    g.init("sin_cache", sin)

    embed = model.matrix("token_embd.weight")
    residual = g.rows(embed, "model.embed_tokens", "input_ids", "/model/embed_tokens", ids_rank=2)
    hidden = g.one("SimplifiedLayerNormalization",
                   [residual, g.init("model.layers.0.input_layernorm.weight", model.vector("blk.0.attn_norm.weight"))],
                   "/model/layers.0/input_layernorm/LayerNorm", epsilon=spec.rms_eps, axis=-1, stash_type=1)
    for i in range(spec.layers):
        log(f"layer {i + 1}/{spec.layers}")
        blk, name = f"blk.{i}", f"/model/layers.{i}"
        attn = _attention(g, model, spec, i, hidden, seqlens_k, total_len)
        residual, hidden = _skip_norm(g, residual, attn, model.vector(f"{blk}.ffn_norm.weight"),
                                      f"model.layers.{i}.post_attention_layernorm.weight",
                                      f"{name}/post_attention_layernorm/SkipLayerNorm", spec.rms_eps)
        gate, up = _gate_up(g, name, hidden, model.matrix(f"{blk}.ffn_gate.weight"),
                            model.matrix(f"{blk}.ffn_up.weight"))
        sigmoid = g.one("Sigmoid", [gate], f"{name}/mlp/act_fn/Sigmoid")
        silu = g.one("Mul", [gate, sigmoid], f"{name}/mlp/act_fn/Mul")
        gated = g.one("Mul", [silu, up], f"{name}/mlp/Mul")
        mlp = g.linear(f"{name}/mlp/down_proj", gated, model.matrix(f"{blk}.ffn_down.weight"))
        if i + 1 < spec.layers:
            residual, hidden = _skip_norm(g, residual, mlp, model.vector(f"blk.{i + 1}.attn_norm.weight"),
                                          f"model.layers.{i + 1}.input_layernorm.weight",
                                          f"/model/layers.{i + 1}/input_layernorm/SkipLayerNorm", spec.rms_eps)
    final = spec.layers
    _, hidden = _skip_norm(g, residual, mlp, model.vector("output_norm.weight"),
                           f"model.layers.{final}.final_norm_layernorm.weight",
                           f"/model/layers.{final}/final_norm_layernorm/SkipLayerNorm", spec.rms_eps)
    if spec.tied_embeddings:
        g.lm_head(hidden, embed, "model.embed_tokens")
    else:
        g.lm_head(hidden, model.matrix("output.weight"), "lm_head")

    leftover = model.unused()
    if leftover:
        raise GGUFImportError(f"{model.path.name} holds tensors a {spec.architecture} decoder does not use: "
                              f"{', '.join(leftover[:8])}{' ...' if len(leftover) > 8 else ''}")
    return _model_proto(g, spec)


def _attention(g: _Graph, model: GGUFModel, spec: DecoderSpec, i: int, hidden: str, seqlens_k: str,
               total_len: str) -> str:
    blk, name = f"blk.{i}", f"/model/layers.{i}/attn"
    q = model.matrix(f"{blk}.attn_q.weight").take_rows(rope_permutation(spec.heads * spec.head_dim, spec.heads))
    k = model.matrix(f"{blk}.attn_k.weight").take_rows(rope_permutation(spec.kv_heads * spec.head_dim, spec.kv_heads))
    v = model.matrix(f"{blk}.attn_v.weight")
    biases = [_bias(model, f"{blk}.attn_{part}.bias", heads)
              for part, heads in (("q", spec.heads), ("k", spec.kv_heads), ("v", None))]
    fused = concat_rows([q, k, v])
    has_bias = any(b is not None for b in biases)
    if fused is not None:
        bias = None
        if has_bias:
            sizes = (q.rows, k.rows, v.rows)
            bias = np.concatenate([b if b is not None else np.zeros(n, np.float32) for b, n in zip(biases, sizes)])
        qkv = [g.linear(f"{name}/qkv_proj", hidden, fused, bias=bias), "", ""]
    else:
        qkv = [g.linear(f"{name}/{part}_proj", hidden, weight, bias=bias)
               for part, weight, bias in zip("qkv", (q, k, v), biases)]
    attn = g.node("GroupQueryAttention",
                  [*qkv, f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens_k, total_len,
                   "cos_cache", "sin_cache"],
                  f"{name}/GroupQueryAttention", domain="com.microsoft",
                  outputs=[f"{name}/GroupQueryAttention/output_0", f"present.{i}.key", f"present.{i}.value"],
                  num_heads=spec.heads, kv_num_heads=spec.kv_heads, scale=float(spec.head_dim ** -0.5),
                  local_window_size=-1, softcap=0.0, do_rotary=1, rotary_interleaved=0)[0]
    return g.linear(f"{name}/o_proj", attn, model.matrix(f"{blk}.attn_output.weight"),
                    bias=_bias(model, f"{blk}.attn_output.bias", None))


def _gate_up(g: _Graph, name: str, hidden: str, gate: BlockMatrix, up: BlockMatrix) -> tuple[str, str]:
    """The MLP's two input projections as one MatMulNBits and a Split, which saves a kernel launch per layer
    (and for Q4_1 one MatMul and one Add of the mins term)."""
    fused = concat_rows([gate, up])
    if fused is None:
        return (g.linear(f"{name}/mlp/gate_proj", hidden, gate), g.linear(f"{name}/mlp/up_proj", hidden, up))
    both = g.linear(f"{name}/mlp/gate_up_proj", hidden, fused)
    gate_out, up_out = g.node("Split", [both, g.const([gate.rows, up.rows])], f"{name}/mlp/gate_up_proj/Split",
                              outputs=2, axis=-1)
    return gate_out, up_out


def _bias(model: GGUFModel, tensor: str, rope_heads: int | None) -> np.ndarray | None:
    if not model.has(tensor):
        return None
    bias = model.vector(tensor)
    return bias[rope_permutation(bias.size, rope_heads)] if rope_heads else bias


def _skip_norm(g: _Graph, residual: str, update: str, weight: np.ndarray, weight_name: str, name: str,
               eps: float) -> tuple[str, str]:
    """`residual + update`, and that sum normalised: the builder's SkipSimplifiedLayerNormalization."""
    outputs = [f"{name.rsplit('/', 1)[0]}/output_0", "", "", f"{name.rsplit('/', 1)[0]}/output_3"]
    g.node("SkipSimplifiedLayerNormalization", [residual, update, g.init(weight_name, weight)], name,
           outputs=outputs, domain="com.microsoft", epsilon=eps)
    return outputs[3], outputs[0]


def _rotary_caches(model: GGUFModel, spec: DecoderSpec) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin `[context, head_dim/2]` for GroupQueryAttention, as the builder computes them."""
    exponents = np.arange(0, spec.head_dim, 2, dtype=np.float64) / spec.head_dim
    inv_freq = 1.0 / (spec.rope_theta ** exponents)
    if model.has("rope_freqs.weight"):
        # Llama 3.1's long-context rescaling, stored by llama.cpp as one divisor per frequency.
        inv_freq = inv_freq / model.vector("rope_freqs.weight").astype(np.float64)
    positions = np.arange(spec.context_length, dtype=np.float64) * spec.rope_position_scale
    angles = np.outer(positions, inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _model_proto(g: _Graph, spec: DecoderSpec) -> onnx.ModelProto:
    kv_shape = ["batch_size", spec.kv_heads, "past_sequence_length", spec.head_dim]
    present_shape = ["batch_size", spec.kv_heads, "total_sequence_length", spec.head_dim]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                            ["batch_size", "total_sequence_length"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                             ["batch_size", "sequence_length", spec.vocab_size])]
    for i in range(spec.layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT, kv_shape))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", TensorProto.FLOAT, present_shape))
    graph = helper.make_graph(g.nodes, "main_graph", inputs, outputs, g.initializers)
    model = helper.make_model(graph, producer_name="ingot gguf import",
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model
