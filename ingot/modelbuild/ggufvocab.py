"""A GGUF file's tokenizer as the files onnxruntime-genai and our tokenizer service read.

A GGUF carries no `tokenizer.json`: the vocabulary, merges, token types, special ids and chat template are
metadata under llama.cpp's key names. This rebuilds a Hugging Face `tokenizer.json` that splits text as
llama.cpp does for the file's `tokenizer.ggml.pre` (its pre-tokenizer regexes, applied in turn), plus
`tokenizer_config.json` and `chat_template.jinja`. Byte-level BPE (`gpt2`) and sentencepiece BPE (`llama`)
vocabularies are supported; anything else is refused by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ingot.modelbuild.ggufmodel import GGUFImportError, GGUFModel

TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED = 2, 3, 4

# How llama.cpp splits byte-level text before BPE, per `tokenizer.ggml.pre` (llama-vocab.cpp), written the way
# the models' own tokenizer.json files write it: onnxruntime-genai's tokenizer recognises those spellings.
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT2_FAMILY = ("gpt-2", "phi-2")
_DIGITS_FAMILY = ("smollm", "starcoder", "refact", "codeshell")  # each digit alone, then GPT-2's regex
_LLAMA3_FAMILY = ("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "falcon3")  # these also ignore merges
_QWEN2_FAMILY = ("qwen2", "deepseek-r1-qwen")
PRE_TOKENIZERS = _GPT2_FAMILY + _DIGITS_FAMILY + _LLAMA3_FAMILY + _QWEN2_FAMILY


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre in _GPT2_FAMILY + _DIGITS_FAMILY)
    if pre in _DIGITS_FAMILY:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in _LLAMA3_FAMILY + _QWEN2_FAMILY:
        split = _LLAMA3 if pre in _LLAMA3_FAMILY else _QWEN2
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"), byte_level])
    return byte_level


_SPM_SPACE = "\u2581"


@dataclass
class TokenizerFiles:
    tokenizer_json: str
    tokenizer_config: dict[str, Any]
    chat_template: str | None
    bos_token_id: int | None
    eos_token_ids: list[int]
    pad_token_id: int | None


def tokenizer_files(model: GGUFModel, *, context_length: int) -> TokenizerFiles:
    kind = model.field("tokenizer.ggml.model")
    tokens = model.field("tokenizer.ggml.tokens")
    if kind is None or tokens is None:
        raise GGUFImportError(f"{model.path.name} carries no tokenizer (tokenizer.ggml.model / tokens)")
    types = model.field("tokenizer.ggml.token_type") or [1] * len(tokens)
    if kind == "gpt2":
        tokenizer = _byte_level(model, tokens, types)
    elif kind == "llama":
        tokenizer = _sentencepiece(model, tokens, types)
    else:
        raise GGUFImportError(f"{model.path.name} has a {kind!r} tokenizer; the importer supports 'gpt2' "
                              "(byte-level BPE) and 'llama' (sentencepiece BPE)")

    def token(key: str) -> tuple[int | None, str | None]:
        index = model.field(f"tokenizer.ggml.{key}")
        if index is None or not 0 <= int(index) < len(tokens):
            return None, None
        return int(index), tokens[int(index)]

    bos_id, bos = token("bos_token_id")
    eos_id, eos = token("eos_token_id")
    pad_id, pad = token("padding_token_id")
    _, unk = token("unknown_token_id")
    add_bos = bool(model.field("tokenizer.ggml.add_bos_token", kind == "llama"))
    add_eos = bool(model.field("tokenizer.ggml.add_eos_token", False))
    if add_bos and bos is not None:
        single = [bos, "$A"] + ([eos] if add_eos and eos else [])
        specials = [(bos, bos_id)] + ([(eos, eos_id)] if add_eos and eos else [])
        tokenizer.post_processor = processors.TemplateProcessing(single=single, special_tokens=specials)

    # Turn-end tokens (`<|eot_id|>`, `<|im_end|>` in some files) stop generation as EOS does.
    eos_ids = [i for i in (eos_id, token("eot_token_id")[0], token("eom_token_id")[0]) if i is not None]
    template = model.field("tokenizer.chat_template")
    config: dict[str, Any] = {
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": pad if pad is not None else eos,
        "unk_token": unk,
        "clean_up_tokenization_spaces": False,
        "model_max_length": context_length,
        "tokenizer_class": "LlamaTokenizer" if kind == "llama" else "GPT2Tokenizer",
    }
    if template:
        config["chat_template"] = template
    return TokenizerFiles(
        tokenizer_json=tokenizer.to_str(pretty=True),
        tokenizer_config=config,
        chat_template=template or None,
        bos_token_id=bos_id,
        eos_token_ids=list(dict.fromkeys(eos_ids)),
        pad_token_id=pad_id if pad_id is not None else eos_id,
    )


def _byte_level(model: GGUFModel, tokens: list[str], types: list[int]) -> Tokenizer:
    pre = model.field("tokenizer.ggml.pre", "gpt-2")
    if pre not in PRE_TOKENIZERS:
        raise GGUFImportError(f"{model.path.name} uses the {pre!r} pre-tokenizer; the importer knows "
                              f"{', '.join(sorted(PRE_TOKENIZERS))}")
    merges = model.field("tokenizer.ggml.merges")
    if merges is None:
        raise GGUFImportError(f"{model.path.name} has a byte-level vocabulary without merges")
    vocab = {token: index for index, token in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges],
                     ignore_merges=pre in _LLAMA3_FAMILY)
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = _pre_tokenizer(pre)
    tokenizer.decoder = decoders.ByteLevel()
    _add_special(tokenizer, tokens, types)
    return tokenizer


def _sentencepiece(model: GGUFModel, tokens: list[str], types: list[int]) -> Tokenizer:
    vocab = {token: index for index, token in enumerate(tokens)}
    merges = model.field("tokenizer.ggml.merges")
    if merges is not None:
        pairs = [tuple(m.split(" ", 1)) for m in merges]
    else:
        scores = model.field("tokenizer.ggml.scores") or [0.0] * len(tokens)
        pairs = _merges_from_scores(tokens, scores, vocab)
    unk_index = model.field("tokenizer.ggml.unknown_token_id")
    unk = tokens[int(unk_index)] if unk_index is not None else None
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, unk_token=unk, fuse_unk=True, byte_fallback=True))
    steps = [normalizers.Replace(" ", _SPM_SPACE)]
    if model.field("tokenizer.ggml.add_space_prefix", True):
        steps.insert(0, normalizers.Prepend(_SPM_SPACE))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.decoder = decoders.Sequence([decoders.Replace(_SPM_SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    _add_special(tokenizer, tokens, types)
    return tokenizer


def _merges_from_scores(tokens: list[str], scores: list[float], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Sentencepiece merges best-first: a pair merges when the token it makes has the higher score."""
    ranked = []
    for token, score in zip(tokens, scores):
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                ranked.append((-float(score), vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _add_special(tokenizer: Tokenizer, tokens: list[str], types: list[int]) -> None:
    # llama.cpp matches control and user-defined tokens whole in the text; without this they would be cut
    # into pieces. Control tokens are special (skipped when decoding with skip_special_tokens).
    special = [AddedToken(t, normalized=False, special=True) for t, kind in zip(tokens, types)
               if kind in (TOKEN_CONTROL, TOKEN_UNKNOWN)]
    plain = [AddedToken(t, normalized=False, special=False) for t, kind in zip(tokens, types)
             if kind == TOKEN_USER_DEFINED]
    if special:
        tokenizer.add_special_tokens(special)
    if plain:
        tokenizer.add_tokens(plain)


def write_json(path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
