"""Tiny GGUF files written with the `gguf` package, and a NumPy forward pass that reads them as llama.cpp does.

The files are random (not real models): a 2-layer llama with a small byte-level BPE vocabulary and a chat
template, each weight in whichever GGUF tensor type a test asks for. The reference forward pass works on the
file's own tensor order (llama.cpp's, with q/k permuted for its adjacent-pair rotary), so it checks the
importer's un-permutation rather than repeating it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFWriter
from gguf.quants import dequantize, quantize

CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
                 "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
WORDS = ("the", "and", "hello", "world", "model", "token", "assistant", "user")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable spelling of each byte, as byte-level BPE vocabularies write their tokens."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


def vocabulary() -> tuple[list[str], list[int], list[str]]:
    """Specials, the 256 bytes, then merged words: tokens, token types and merges of a working byte-level BPE."""
    spell = bytes_to_unicode()
    tokens = list(SPECIALS) + [spell[b] for b in range(256)]
    merges: list[str] = []
    for word in WORDS:
        # Left to right into the word, then the space in front of it: "Ġ" + "hello" → "Ġhello".
        pieces = [spell[b] for b in word.encode()]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if merged not in tokens:
                tokens.append(merged)
                merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [merged] + pieces[2:]
        tokens.append(spell[ord(" ")] + word)
        merges.append(f"{spell[ord(' ')]} {word}")
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
    return tokens, types, merges


def sentencepiece_vocabulary() -> tuple[list[str], list[int], list[float]]:
    """A llama-style sentencepiece BPE: <unk> <s> </s>, the 256 byte-fallback tokens, letters and ▁-words."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0] * len(tokens)
    pieces: dict[str, float] = {}
    for word in WORDS:
        spelled = "\u2581" + word
        for end in range(1, len(spelled) + 1):
            pieces.setdefault(spelled[end - 1], -100.0)  # single characters merge last
            pieces.setdefault(spelled[:end], -float(end) if end > 1 else -100.0)
    for piece, score in pieces.items():
        if piece not in tokens:
            tokens.append(piece)
            types.append(1)
            scores.append(score if len(piece) > 1 else -100.0)
    return tokens, types, scores


@dataclass
class TinySpec:
    layers: int = 2
    hidden: int = 128
    intermediate: int = 256
    heads: int = 4
    kv_heads: int = 2
    context: int = 256
    rope_theta: float = 10000.0
    eps: float = 1e-5
    tied: bool = True
    architecture: str = "llama"
    tokenizer: str = "gpt2"
    # GGUF tensor name (without "blk.N.") → type; anything not named is F32 (norms) or `default`.
    types: dict[str, T] = field(default_factory=dict)
    default: T = T.Q4_0


def write_tiny_gguf(path: Path, spec: TinySpec, *, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    if spec.tokenizer == "llama":
        tokens, types, scores = sentencepiece_vocabulary()
        merges = None
    else:
        tokens, types, merges = vocabulary()
    vocab = len(tokens)
    head_dim = spec.hidden // spec.heads
    writer = GGUFWriter(str(path), spec.architecture)
    writer.add_name("tiny random llama")
    writer.add_block_count(spec.layers)
    writer.add_context_length(spec.context)
    writer.add_embedding_length(spec.hidden)
    writer.add_feed_forward_length(spec.intermediate)
    writer.add_head_count(spec.heads)
    writer.add_head_count_kv(spec.kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(spec.rope_theta)
    writer.add_layer_norm_rms_eps(spec.eps)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model(spec.tokenizer)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    if merges is None:
        writer.add_token_scores(scores)
        writer.add_unk_token_id(0)
    else:
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_merges(merges)
        writer.add_pad_token_id(2)
        writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    def matrix(name: str, rows: int, cols: int, kind: T | None = None) -> None:
        values = (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)
        kind = kind or spec.types.get(name.split(".", 2)[-1] if name.startswith("blk.") else name, spec.default)
        if kind == T.F32:
            writer.add_tensor(name, values)
        elif kind == T.F16:
            writer.add_tensor(name, values.astype(np.float16))
        elif kind == T.I32:
            writer.add_tensor(name, (values * 100).astype(np.int32))
        else:
            writer.add_tensor(name, quantize(values, kind), raw_dtype=kind)

    def norm(name: str, size: int) -> None:
        writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(size)).astype(np.float32))

    matrix("token_embd.weight", vocab, spec.hidden)
    for i in range(spec.layers):
        norm(f"blk.{i}.attn_norm.weight", spec.hidden)
        matrix(f"blk.{i}.attn_q.weight", spec.heads * head_dim, spec.hidden)
        matrix(f"blk.{i}.attn_k.weight", spec.kv_heads * head_dim, spec.hidden)
        matrix(f"blk.{i}.attn_v.weight", spec.kv_heads * head_dim, spec.hidden)
        matrix(f"blk.{i}.attn_output.weight", spec.hidden, spec.heads * head_dim)
        norm(f"blk.{i}.ffn_norm.weight", spec.hidden)
        matrix(f"blk.{i}.ffn_gate.weight", spec.intermediate, spec.hidden)
        matrix(f"blk.{i}.ffn_up.weight", spec.intermediate, spec.hidden)
        matrix(f"blk.{i}.ffn_down.weight", spec.hidden, spec.intermediate)
    norm("output_norm.weight", spec.hidden)
    if not spec.tied:
        matrix("output.weight", vocab, spec.hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def reference_logits(path: Path, ids: list[int]) -> np.ndarray:
    """`[len(ids), vocab]` logits of the GGUF's fp32 dequantised weights, computed as llama.cpp computes them."""
    reader = GGUFReader(str(path))
    arch = reader.fields["general.architecture"].contents()

    def meta(key: str):
        return reader.fields[f"{arch}.{key}"].contents()

    tensors = {t.name: t for t in reader.tensors}

    def weight(name: str) -> np.ndarray:
        t = tensors[name]
        shape = [int(x) for x in reversed(t.shape)]
        kind = T(t.tensor_type)
        values = np.asarray(t.data, dtype=np.float32) if kind == T.F32 else dequantize(t.data, kind)
        return values.astype(np.float64).reshape(shape)

    heads, kv_heads, eps = meta("attention.head_count"), meta("attention.head_count_kv"), meta(
        "attention.layer_norm_rms_epsilon")
    embed = weight("token_embd.weight")
    head_dim = embed.shape[1] // heads
    theta = meta("rope.freq_base") ** (-np.arange(0, head_dim, 2) / head_dim)
    angles = np.outer(np.arange(len(ids)), theta)
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]

    def rms(x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x: np.ndarray) -> np.ndarray:  # llama.cpp's NORM mode: adjacent pairs (2i, 2i+1) rotate together
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out

    n = len(ids)
    x = embed[ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(meta("block_count")):
        h = rms(x, weight(f"blk.{i}.attn_norm.weight"))
        q = rope((h @ weight(f"blk.{i}.attn_q.weight").T).reshape(n, heads, head_dim))
        k = rope((h @ weight(f"blk.{i}.attn_k.weight").T).reshape(n, kv_heads, head_dim))
        v = (h @ weight(f"blk.{i}.attn_v.weight").T).reshape(n, kv_heads, head_dim)
        group = heads // kv_heads
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(head_dim) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        attn = np.einsum("hqk,khd->qhd", scores, v).reshape(n, heads * head_dim)
        x = x + attn @ weight(f"blk.{i}.attn_output.weight").T
        h = rms(x, weight(f"blk.{i}.ffn_norm.weight"))
        gate = h @ weight(f"blk.{i}.ffn_gate.weight").T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ weight(f"blk.{i}.ffn_up.weight").T)) @ weight(
            f"blk.{i}.ffn_down.weight").T
    x = rms(x, weight("output_norm.weight"))
    head = weight("output.weight") if "output.weight" in tensors else embed
    return (x @ head.T).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _session(model_file: str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model_file, options, providers=["CPUExecutionProvider"])


def onnx_logits(model_dir: Path, ids: list[int]) -> np.ndarray:
    """All positions' logits of an imported model in one prefill through onnxruntime."""
    decoder = json.loads((Path(model_dir) / "genai_config.json").read_text())["model"]["decoder"]
    session = _session(str(Path(model_dir) / "model.onnx"))
    feed = {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}
    empty = np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), np.float32)
    for i in range(decoder["num_hidden_layers"]):
        feed[f"past_key_values.{i}.key"] = empty
        feed[f"past_key_values.{i}.value"] = empty
    return session.run(["logits"], feed)[0][0]
