"""A model's tokenizer files, read without its weights: tokenizer.json, tokenizer_config.json and the chat
template, found where transformers finds them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

TOKENIZER_NAME = "tokenizer.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
CHAT_TEMPLATE_NAME = "chat_template.jinja"
# The named special tokens transformers passes to every template (its SPECIAL_TOKENS_ATTRIBUTES).
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class ModelFilesError(ValueError):
    """The folder lacks a usable tokenizer."""


@dataclass(frozen=True)
class ModelTokenizer:
    tokenizer: Tokenizer
    # Template sources by name: "default", and "tool_use" where a model ships a separate one for tools.
    templates: Mapping[str, str]
    special_tokens: Mapping[str, str]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def template_source(self, with_tools: bool) -> str | None:
        if with_tools and "tool_use" in self.templates:
            return self.templates["tool_use"]
        return self.templates.get("default")


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json writes a token either as its text or as a serialized AddedToken.
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def special_tokens(config: Mapping[str, Any]) -> dict[str, str]:
    tokens = {}
    for name in SPECIAL_TOKEN_NAMES:
        text = _token_text(config.get(name))
        if text is not None:
            tokens[name] = text
    return tokens


def templates_from_config(config: Mapping[str, Any]) -> dict[str, str]:
    value = config.get("chat_template")
    if isinstance(value, str):
        return {"default": value}
    if isinstance(value, list):
        # The older multi-template form: [{"name": "default", "template": ...}, {"name": "tool_use", ...}].
        return {entry["name"]: entry["template"] for entry in value
                if isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("template"), str)}
    return {}


def load(folder: Path) -> ModelTokenizer:
    try:
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_NAME))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises bare Exceptions for missing or bad files
        raise ModelFilesError(f"cannot load {TOKENIZER_NAME}: {exc}") from exc
    # A tokenizer.json may carry the truncation and padding a training pipeline used; counting and
    # encoding must see every token of the text, as transformers' own calls do by default.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    config: Any = {}
    config_path = folder / TOKENIZER_CONFIG_NAME
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"cannot read {TOKENIZER_CONFIG_NAME}: {exc}") from exc
    if not isinstance(config, Mapping):
        raise ModelFilesError(f"{TOKENIZER_CONFIG_NAME} is not a JSON object")
    templates = templates_from_config(config)
    template_path = folder / CHAT_TEMPLATE_NAME
    # transformers lets the standalone file win over the copy in tokenizer_config.json.
    if template_path.is_file():
        try:
            templates["default"] = template_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelFilesError(f"cannot read {CHAT_TEMPLATE_NAME}: {exc}") from exc
    return ModelTokenizer(tokenizer=tokenizer, templates=templates, special_tokens=special_tokens(config))
