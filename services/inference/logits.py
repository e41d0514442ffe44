"""What a sequence does to the model's logits before each sampling step, and the logprobs it reports.

onnxruntime-genai hands out the raw next-token logits (`get_logits`) and takes them back (`set_logits`)
before it applies temperature, top-k/top-p and guidance, so logit_bias, OpenAI's penalties and Hugging
Face's repetition_penalty are exact here, the reported logprobs are those of the distribution sampled, and a
bias can never break a grammar.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

BAN = -100.0


@dataclass(frozen=True)
class Alternative:
    token_id: int
    logprob: float


@dataclass(frozen=True)
class LogprobEntry:
    token_id: int
    logprob: float
    top: tuple[Alternative, ...]


@dataclass
class LogitsProcessor:
    """Hugging Face's repetition_penalty over the prompt and the tokens this choice generated, then logit_bias,
    then OpenAI's presence and frequency penalties over the generated tokens."""

    logit_bias: dict[int, float] = field(default_factory=dict)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    prompt: Iterable[int] = ()
    _counts: dict[int, int] = field(default_factory=dict)
    _seen: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.repetition_penalty != 1.0:
            self._seen.update(int(token) for token in self.prompt)
        ids = np.fromiter(self.logit_bias.keys(), dtype=np.int64, count=len(self.logit_bias))
        values = np.fromiter(self.logit_bias.values(), dtype=np.float32, count=len(self.logit_bias))
        # -100 is OpenAI's "ban": make it absolute, so a banned token can never be sampled.
        self._bias_ids, self._bias_values = ids, np.where(values <= BAN, -np.inf, values).astype(np.float32)

    @property
    def active(self) -> bool:
        return (bool(self.logit_bias) or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0
                or self.repetition_penalty != 1.0)

    def apply(self, row: np.ndarray) -> None:
        """Adjusts one position's logits in place."""
        if self._seen and self.repetition_penalty != 1.0:
            # transformers' RepetitionPenaltyLogitsProcessor: a seen token's logit is divided by the penalty
            # where it is positive and multiplied by it where it is negative, so a penalty > 1 always lowers it.
            ids = np.fromiter(self._seen, dtype=np.int64, count=len(self._seen))
            seen = row[ids]
            row[ids] = np.where(seen < 0, seen * self.repetition_penalty, seen / self.repetition_penalty)
        if self._bias_ids.size:
            row[self._bias_ids] += self._bias_values
        if self._counts and (self.presence_penalty or self.frequency_penalty):
            ids = np.fromiter(self._counts.keys(), dtype=np.int64, count=len(self._counts))
            counts = np.fromiter(self._counts.values(), dtype=np.float32, count=len(self._counts))
            row[ids] -= counts * self.frequency_penalty + self.presence_penalty

    def observe(self, token_id: int) -> None:
        self._counts[token_id] = self._counts.get(token_id, 0) + 1
        if self.repetition_penalty != 1.0:
            self._seen.add(token_id)


def log_softmax(row: np.ndarray) -> np.ndarray:
    peak = np.max(row)
    shifted = row - peak
    return shifted - np.log(np.sum(np.exp(shifted)))


def logprob_entry(logprobs: np.ndarray, token_id: int, top_n: int) -> LogprobEntry:
    top: tuple[Alternative, ...] = ()
    if top_n:
        candidates = np.argpartition(-logprobs, top_n - 1)[:top_n]
        ranked = candidates[np.argsort(-logprobs[candidates], kind="stable")]
        top = tuple(Alternative(int(i), float(logprobs[i])) for i in ranked)
    return LogprobEntry(token_id, float(logprobs[token_id]), top)
