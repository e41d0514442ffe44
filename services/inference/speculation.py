"""When a sequence verifies n-gram drafts (prompt lookup) instead of decoding one token per step.

onnxruntime-genai 0.18 looks the last tokens up in the sequence so far and, where they occurred before,
proposes what followed as a draft that one forward pass verifies; the answer is the same token for token
(greedy), it only comes sooner when the answer copies from the prompt (editing, extraction, code). Measured
on the default model with the raw Generator: a copy-heavy prompt 54 → 86 tokens/s, a free-form story
79 → 70. So drafts are tried only where they can pay and are backed off where they did not:
- only a sequence alone in its generator (drafts need batch 1), with nothing that reads or rewrites each
  step's logits (logprobs, logit bias, penalties, a grammar), and a prompt long enough to copy from, of a
  model whose multi-token steps compute as its one-token steps do (not int8 activations);
- within a request, onnxruntime-genai's own cooldown pauses drafting after failed rounds;
- across requests, a model whose last drafting request ran slower than plain decoding (its own observed
  speedup, from `get_speculative_stats`) skips drafts for the next 1, 2, 4 ... 32 eligible requests, then
  tries again.
"""

from __future__ import annotations

from dataclasses import dataclass

SPECULATIVE_OPTIONS = {"ngram_size": 3, "max_draft_tokens": 4, "cooldown": True}
# Shorter prompts rarely hold the n-grams an answer repeats.
MIN_PROMPT_TOKENS = 64
MAX_BACKOFF = 32
# Fewer drafting rounds than this say too little about a model's answers to back off on.
MIN_ROUNDS = 4


@dataclass
class _ModelState:
    skip: int = 0
    backoff: int = 0


class DraftPolicy:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._models: dict[str, _ModelState] = {}

    def eligible(self, sequence) -> bool:
        # Verifying drafts computes several tokens in one step; where that rounds differently from decoding
        # one token (int8 activations), drafts would change the answer.
        model = sequence.model
        return (self.enabled and (model is None or model.steps_agree)
                and sequence.guidance is None and not sequence.score_prompt
                and sequence.processor is None and sequence.top_logprobs is None
                and len(sequence.prompt) >= MIN_PROMPT_TOKENS)

    def allows(self, sequence) -> bool:
        """Whether this sequence may draft now (and so may reuse a drafting generator)."""
        if not self.eligible(sequence):
            return False
        state = self._models.get(sequence.model_id)
        return state is None or state.skip == 0

    def choose(self, sequence) -> bool:
        """Whether this sequence (which will run alone) drafts; consumes one skip of a backed-off model."""
        allowed = self.allows(sequence)
        state = self._models.get(sequence.model_id)
        if self.eligible(sequence) and state is not None and state.skip > 0:
            state.skip -= 1
        return allowed

    def observe(self, model_id: str, stats: dict) -> None:
        """Learns from a finished drafting request's statistics."""
        if stats.get("rounds", 0) < MIN_ROUNDS:
            return
        state = self._models.setdefault(model_id, _ModelState())
        if stats.get("observed_speedup", 1.0) < 1.0:
            state.backoff = min(MAX_BACKOFF, max(1, state.backoff * 2))
            state.skip = state.backoff
        else:
            state.backoff = 0

    def forget(self, model_id: str) -> None:
        self._models.pop(model_id, None)
