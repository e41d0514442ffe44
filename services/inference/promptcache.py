"""The prompt cache: finished batch-1 generators kept for the next request that shares their prefix.

A conversation's next turn repeats the whole history, and applications send one long system prompt with
every request. A generator that answered such a prompt still holds its KV cache, so the next request of
the same model whose prompt shares a long prefix rewinds it to the longest common prefix and prefills only
the rest (llama.cpp's slot reuse). Measured on the default model: a 1,139-token prompt sharing 1,128 tokens
with the previous one answers its first token in 55 ms instead of 2.4 s, with the same greedy answer.

What limits it:
- Only a generator of one row can be rewound, so only sequences that ran alone are kept, and a hit runs
  alone: a long prefix saved is worth more than a seat in a batch (a short one joins a burst's batch
  instead; see admission.runs_alone).
- The search options are fixed when a generator is made: an entry serves only requests with the same
  options, and its KV cache was allocated for `capacity` tokens (prompt and answer), which the request
  must fit in. Sequences that may be kept are made with room beyond their own need for the next turns
  (`room`).
- With int8 activations a decoded token's KV differs from a prefilled one's, so a kept answer is reused
  only once `settle` has prefilled it again, which the engine does while idle: the next turn still
  answers exactly as an uncached run does.
- Entries are bounded by count and by the bytes of their KV caches (preallocated for their capacity);
  the least recently used goes first. An entry is taken out while a request uses it, so it is never
  shared, and it returns only when that request finished normally: a cancelled or failed request's
  generator is dropped, never reused.

Pure bookkeeping on the engine thread; nothing here calls into onnxruntime-genai except `rewind_to`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from services.inference.batch import chunk_end

HITS = Counter("ingot_prompt_cache_hits_total", "requests that reused a cached prompt prefix", ["model"])
MISSES = Counter("ingot_prompt_cache_misses_total", "requests the prompt cache could have served but did not",
                 ["model"])
REUSED_TOKENS = Counter("ingot_prompt_cache_reused_tokens_total", "prompt tokens answered from the prompt "
                        "cache instead of being prefilled", ["model"])
EVICTIONS = Counter("ingot_prompt_cache_evictions_total", "cached prompts dropped to stay within the bounds",
                    ["model"])
SETTLED_TOKENS = Counter("ingot_prompt_cache_settled_tokens_total", "answer tokens prefilled again while idle so "
                         "that the next turn reuses them (models whose one-token steps round differently)",
                         ["model"])
ENTRIES = Gauge("ingot_prompt_cache_entries", "finished generators kept for prompt reuse")
BYTES = Gauge("ingot_prompt_cache_bytes", "KV cache bytes held by the prompt cache's generators")

# Below this a shared prefix saves less than a batch seat is worth (a short prompt prefills in a few ms).
MIN_REUSE_TOKENS = 32
# The least room a kept generator gets beyond its request: a chat's next few turns. Measured on the default
# model, 256 tokens of KV cache add under 1 ms to making a generator (1,024: 3 ms), while prefilling a turn
# the generator had no room for costs about 2.5 ms a token.
MIN_ROOM_TOKENS = 256


def options_key(search_options: dict[str, Any]) -> tuple | None:
    """The options a generator was made with, as far as they shape its answers; None: never cached.

    A seeded sampled answer must repeat exactly, which a generator whose random stream already moved
    cannot promise."""
    options = {k: v for k, v in search_options.items() if k != "max_length"}
    if options.get("do_sample") and "random_seed" in options:
        return None
    if not options.get("do_sample"):
        options.pop("random_seed", None)
    return tuple(sorted(options.items()))


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


@dataclass(eq=False)
class Entry:
    model_id: str
    options: tuple
    generator: Any
    # The tokens the generator holds (prompt and answer); its KV cache is valid for all but the last.
    tokens: np.ndarray
    capacity: int
    nbytes: int
    speculative: bool = False
    # How many leading tokens' KV a new request may reuse: None, all the generator holds; where one-token
    # steps compute differently (LoadedModel.steps_agree), only what was prefilled: its prompt's at first,
    # its answer's too once settled (see settle).
    reusable: int | None = None
    reuse: int = field(default=0, repr=False)


class PromptCache:
    def __init__(self, *, max_entries: int, max_bytes: int, headroom: int, settle: bool = True) -> None:
        self.max_entries = max_entries
        self.settles = settle
        self.max_bytes = max_bytes
        self.headroom = headroom
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def find(self, model_id: str, options: tuple | None, prompt: list[int], need: int,
             drafts: bool = True) -> Entry | None:
        """The entry that shares the longest prefix with `prompt` (at least MIN_REUSE_TOKENS) and has room
        for `need` tokens, without taking it; its `reuse` says how many prompt tokens it saves. Without
        `drafts`, only generators that do not draft (a request that reads or rewrites each step's logits)."""
        if not self.enabled or options is None:
            return None
        ids = np.asarray(prompt, dtype=np.int32)
        best: Entry | None = None
        for entry in self._entries.values():
            if (entry.model_id != model_id or entry.options != options or entry.capacity < need
                    or (entry.speculative and not drafts)):
                continue
            # At least one prompt token must be appended to get the next position's logits, and the last
            # token the generator holds has no KV yet. Where only prefilled KV is reusable, the rest of
            # the prompt is prefilled as at least two tokens, as it would be without the cache.
            if entry.reusable is None:
                reuse = min(common_prefix(entry.tokens, ids), len(ids) - 1, len(entry.tokens) - 1)
            else:
                reuse = min(common_prefix(entry.tokens, ids), len(ids) - 2, entry.reusable)
            # Oldest first: on a tie the most recent entry wins, made under the latest draft policy.
            if reuse >= MIN_REUSE_TOKENS and (best is None or reuse >= best.reuse):
                entry.reuse = reuse
                best = entry
        return best

    def take(self, entry: Entry) -> Any:
        """Removes `entry` for one request and rewinds its generator to the shared prefix."""
        self._entries.pop(id(entry))
        self._bytes -= entry.nbytes
        self._publish()
        HITS.labels(entry.model_id).inc()
        REUSED_TOKENS.labels(entry.model_id).inc(entry.reuse)
        entry.generator.rewind_to(entry.reuse)
        return entry.generator

    def cacheable(self, sequence) -> bool:
        """Whether a sequence's generator may be kept and reused: not with a grammar (its matcher cannot
        rewind) or token-by-token prompt scoring, nor with a seed (see options_key)."""
        return (self.enabled and sequence.guidance is None and not sequence.score_prompt
                and options_key(sequence.search_options) is not None)

    def room(self, sequence) -> int:
        """The tokens a generator that may be kept gets beyond its own request, for the next turn of its
        conversation: the prompt's length, so a growing conversation outgrows its generator only each time
        it doubles, at least MIN_ROOM_TOKENS and at most `headroom`."""
        return min(self.headroom, max(MIN_ROOM_TOKENS, len(sequence.prompt)))

    def lookup(self, sequence) -> Entry | None:
        """The entry for a sequence. A drafting generator never serves one that reads or rewrites each
        step's logits; it does serve one whose model backed drafts off, since a full prefill costs far more
        than drafts that do not pay (which onnxruntime-genai's cooldown pauses anyway)."""
        if not self.cacheable(sequence):
            return None
        return self.find(sequence.model_id, options_key(sequence.search_options), sequence.prompt,
                         sequence.budget.max_length,
                         drafts=sequence.processor is None and sequence.top_logprobs is None)

    def count_miss(self, sequence) -> None:
        """Counts a cacheable sequence that found nothing to reuse, once however often it was held back."""
        if not sequence.looked_up and self.cacheable(sequence):
            MISSES.labels(sequence.model_id).inc()
        sequence.looked_up = True

    def keep(self, group) -> None:
        """Keeps a dropped batch group's generator if it was made to be kept and its one row finished
        normally: a cancelled or failed row's KV cache may not match its tokens, so it goes."""
        row, generator = group.rows[0], group.generator
        if not group.keep or generator is None or not row.completed:
            return
        self.put(Entry(model_id=group.model.id, options=options_key(row.search_options), generator=generator,
                       tokens=np.asarray(generator.get_sequence(0), dtype=np.int32), capacity=group.capacity,
                       nbytes=group.capacity * group.model.kv_bytes_per_token, speculative=group.speculative,
                       reusable=None if group.model.steps_agree else len(row.prompt)))

    def put(self, entry: Entry) -> None:
        """Keeps a finished generator, evicting the least recently used entries to stay within bounds."""
        if not self.enabled or entry.nbytes > self.max_bytes:
            return
        self._entries[id(entry)] = entry
        self._bytes += entry.nbytes
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.nbytes
            EVICTIONS.labels(oldest.model_id).inc()
        self._publish()

    def unsettled(self) -> Entry | None:
        """The most recently used entry whose answer is not yet reusable, if any (and settling is on)."""
        if not self.settles:
            return None
        for entry in reversed(self._entries.values()):
            if entry.reusable is not None and len(entry.tokens) - entry.reusable >= 2:
                return entry
        return None

    def settle(self, chunk: int) -> None:
        """Prefills up to `chunk` tokens of the most recently used entry's answer again, so that the next
        turn of its conversation reuses them. Where one-token steps compute differently from prefills
        (int8 activations), a decoded answer's KV is not what prefilling the next turn's prompt gives, so
        only prefilled KV is reused; the engine calls this while it has nothing else to do (a user
        reading the answer), and the next turn prefills only its question, with the answer a full
        prefill gives. Never leaves one token for later: that would be a one-token step."""
        entry = self.unsettled()
        if entry is None:
            return
        start = entry.reusable
        end = chunk_end(start, len(entry.tokens), chunk)
        try:
            entry.generator.rewind_to(start)
            entry.generator.append_tokens(entry.tokens[start:end])
        except Exception:  # noqa: BLE001 - a generator that cannot settle is dropped, not kept half-done
            self._entries.pop(id(entry), None)
            self._bytes -= entry.nbytes
            self._publish()
            return
        entry.reusable = end
        SETTLED_TOKENS.labels(entry.model_id).inc(end - start)

    def drop_model(self, model_id: str) -> None:
        """Forgets a model's entries (it is being unloaded: their KV caches go with it)."""
        for key in [k for k, e in self._entries.items() if e.model_id == model_id]:
            self._bytes -= self._entries.pop(key).nbytes
        self._publish()

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._publish()

    def _publish(self) -> None:
        ENTRIES.set(len(self._entries))
        BYTES.set(self._bytes)
