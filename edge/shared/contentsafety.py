"""The content filter deployments can turn on: prompts and outputs checked against term lists.

Azure's categories (hate, sexual, violence, self_harm) and its severity scale (safe 0, low 2, medium 4,
high 6). Each category lists terms per severity and has a threshold: text that hits a term of the
threshold's severity or above is blocked. A term is a word or phrase, matched case-insensitively on word
boundaries with any run of whitespace between its words.

The interface is small (`check(text)` -> hits, `blocked(text)` -> the hits at or over the thresholds) so a
classifier model can stand in for the term lists. The lists come from a YAML or JSON file:

    thresholds: {hate: low, sexual: medium, violence: medium, self_harm: low}
    terms:
      violence:
        high: ["behead", "mass shooting"]
        medium: ["stab", "kill"]

and default to DEFAULT_TERMS below.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from aiohttp import web

from edge.mesh.messages import Tagged, content_filtered, is_final
from ingot.common.errors import InvalidArgument

CATEGORIES = ("hate", "sexual", "violence", "self_harm")
SEVERITIES = {"safe": 0, "low": 2, "medium": 4, "high": 6}

# A deliberately short, conservative default: phrases with little innocent use. Operators wanting broader
# coverage supply their own lists (--content-safety-terms).
DEFAULT_TERMS: dict[str, Any] = {
    "thresholds": {"hate": "medium", "sexual": "medium", "violence": "medium", "self_harm": "low"},
    "terms": {
        "hate": {
            "high": ["ethnic cleansing", "exterminate them all", "gas the"],
            "medium": ["subhuman", "inferior race", "master race"],
        },
        "sexual": {
            "high": ["child pornography", "sexual abuse material"],
            "medium": ["explicit sex scene", "hardcore porn", "pornographic"],
        },
        "violence": {
            "high": ["build a bomb", "make a bomb", "mass shooting", "behead"],
            "medium": ["kill you", "murder him", "murder her", "torture them"],
            "low": ["punch him", "punch her"],
        },
        "self_harm": {
            "high": ["kill myself", "end my life", "suicide method"],
            "medium": ["cut myself", "hurt myself"],
            "low": ["self-harm", "self harm"],
        },
    },
}


@dataclass(frozen=True)
class Hit:
    category: str
    severity: int
    term: str


class ContentFilter(Protocol):
    def check(self, text: str) -> list[Hit]: ...

    def blocked(self, text: str) -> list[Hit]: ...


def _severity(value: Any, where: str) -> int:
    if isinstance(value, str) and value.lower() in SEVERITIES:
        return SEVERITIES[value.lower()]
    raise ValueError(f"{where}: severity must be one of {sorted(SEVERITIES)}, got {value!r}")


def _pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in term.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


@dataclass
class TermListFilter:
    """Term lists per category and severity, with a blocking threshold per category."""

    thresholds: dict[str, int]
    patterns: list[tuple[str, int, str, re.Pattern[str]]] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TermListFilter:
        unknown = set(config) - {"thresholds", "terms"}
        if unknown:
            raise ValueError(f"content safety config: unknown keys {sorted(unknown)}")
        thresholds = {category: SEVERITIES["medium"] for category in CATEGORIES}
        for category, value in (config.get("thresholds") or {}).items():
            if category not in CATEGORIES:
                raise ValueError(f"content safety thresholds: unknown category {category!r} (use {CATEGORIES})")
            thresholds[category] = _severity(value, f"thresholds.{category}")
        patterns = []
        for category, levels in (config.get("terms") or {}).items():
            if category not in CATEGORIES:
                raise ValueError(f"content safety terms: unknown category {category!r} (use {CATEGORIES})")
            for level, terms in (levels or {}).items():
                severity = _severity(level, f"terms.{category}")
                if not isinstance(terms, list) or not all(isinstance(t, str) and t.strip() for t in terms):
                    raise ValueError(f"content safety terms.{category}.{level}: expected a list of non-empty strings")
                patterns += [(category, severity, term, _pattern(term)) for term in terms]
        return cls(thresholds, patterns)

    @classmethod
    def from_file(cls, path: Path | None) -> TermListFilter:
        if path is None:
            return cls.from_config(DEFAULT_TERMS)
        text = path.read_text()
        config = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(config, Mapping):
            raise ValueError(f"{path}: expected a mapping with 'thresholds' and 'terms'")
        return cls.from_config(config)

    def check(self, text: str) -> list[Hit]:
        return [Hit(category, severity, term) for category, severity, term, pattern in self.patterns
                if pattern.search(text)]

    def blocked(self, text: str) -> list[Hit]:
        return [hit for hit in self.check(text) if hit.severity >= self.thresholds[hit.category]
                and hit.severity > 0]


CONTENT_FILTER = web.AppKey("content_filter", TermListFilter)


def check_prompt(content_filter: ContentFilter, texts: Sequence[str], *, param: str) -> None:
    """A 400 with code content_filter when any of the prompt's texts is blocked."""
    for text in texts:
        hits = content_filter.blocked(text)
        if hits:
            categories = sorted({hit.category for hit in hits})
            raise InvalidArgument("The response was filtered due to the prompt triggering this deployment's content "
                                  f"management policy (categories: {', '.join(categories)}). Please modify your "
                                  "prompt and retry.", param=param, code="content_filter")


async def watch_output(content_filter: ContentFilter, messages: AsyncIterator[Tagged],
                       choices: int) -> AsyncIterator[Tagged]:
    """The generation's messages, with each choice's text so far checked as it grows. A choice whose text
    is blocked ends there: the message that completed the hit is replaced by a final one with finish reason
    CONTENT_FILTER and no text, and later messages of that choice are dropped. Once every choice has ended
    the iteration stops, and the caller (edge.openai.generation.generate) cancels the calls still generating."""
    texts: dict[tuple[int, int], str] = {}
    ended: set[tuple[int, int]] = set()
    async for position, message in messages:
        key = (position, message.index)
        if key in ended:
            continue
        texts[key] = texts.get(key, "") + message.text
        if message.text and content_filter.blocked(texts[key]):
            message = content_filtered(message)
        if is_final(message):
            ended.add(key)
        yield position, message
        if len(ended) >= choices:
            return
