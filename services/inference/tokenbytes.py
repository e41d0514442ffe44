"""Each token's exact bytes, which OpenAI's logprobs report and which a lone token's decoded text can
lose (a token may hold half of a multi-byte character)."""

from __future__ import annotations

import json
import re
from pathlib import Path


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted: byte-level BPE vocabularies spell bytes with it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes)}


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _uses_byte_level(tokenizer: dict) -> bool:
    parts = [tokenizer.get("pre_tokenizer") or {}, tokenizer.get("decoder") or {}]
    stack = list(parts)
    while stack:
        node = stack.pop()
        if node.get("type") == "ByteLevel":
            return True
        stack.extend(node.get("pretokenizers", []) or node.get("decoders", []) or [])
    return False


def load_token_bytes(tokenizer_file: Path, vocab_size: int) -> list[bytes]:
    tokenizer = json.loads(tokenizer_file.read_text())
    table = [b""] * vocab_size
    vocab = tokenizer.get("model", {}).get("vocab", {})
    items = vocab.items() if isinstance(vocab, dict) else ((piece, i) for i, (piece, _score) in enumerate(vocab))
    if _uses_byte_level(tokenizer):
        alphabet = _byte_level_alphabet()
        for piece, token_id in items:
            if token_id < vocab_size:
                table[token_id] = bytes(alphabet.get(ch, 0) for ch in piece) if all(
                    ch in alphabet for ch in piece) else piece.encode()
    else:
        # SentencePiece style: "▁" is a space and <0xNN> pieces are raw bytes.
        for piece, token_id in items:
            if token_id < vocab_size:
                match = _BYTE_FALLBACK.match(piece)
                table[token_id] = bytes([int(match.group(1), 16)]) if match else piece.replace("▁", " ").encode()
    for added in tokenizer.get("added_tokens", []):
        if added["id"] < vocab_size:
            table[added["id"]] = added["content"].encode()
    return table
