"""Every sampling parameter checked by its effect on the real model, through the `openai` SDK."""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from tokenizers import Tokenizer

from tests.conftest import SMOLLM2_ALIAS

pytestmark = pytest.mark.e2e

STORY = [{"role": "user", "content": "Write a short story about a dragon who learns to paint."}]
COLORS = [{"role": "user", "content": "Name three primary colors."}]


def sample(client, **params):
    params.setdefault("max_tokens", 30)
    params.setdefault("messages", STORY)
    return client.chat.completions.create(model=SMOLLM2_ALIAS, **params)


def test_the_same_seed_repeats_and_different_seeds_differ(client):
    first = sample(client, temperature=1.0, seed=1234).choices[0].message.content
    again = sample(client, temperature=1.0, seed=1234).choices[0].message.content
    other = sample(client, temperature=1.0, seed=98765).choices[0].message.content
    assert first == again
    assert first != other


def test_a_seed_repeats_while_other_requests_run_at_the_same_time(client):
    alone = sample(client, temperature=1.0, seed=77).choices[0].message.content
    with ThreadPoolExecutor(4) as pool:
        noise = [pool.submit(sample, client, temperature=1.0, seed=i) for i in range(3)]
        crowded = pool.submit(sample, client, temperature=1.0, seed=77)
        assert crowded.result().choices[0].message.content == alone
        [f.result() for f in noise]


def test_foundrys_random_seed_is_the_seed(client):
    seeded = sample(client, temperature=1.0, seed=4321).choices[0].message.content
    assert sample(client, temperature=1.0, extra_body={"random_seed": 4321}).choices[0].message.content == seeded


def test_a_stop_string_ends_the_answer_and_never_appears(client):
    greedy = sample(client, messages=COLORS, temperature=0, max_tokens=40).choices[0].message.content
    # Cut at a word from the middle of the greedy answer: generation must end right before it.
    stop = next(word for word in ("Blue", "Yellow", "blue", "yellow") if word in greedy)
    cut = sample(client, messages=COLORS, temperature=0, max_tokens=40, stop=[stop, "@@@"])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == greedy[:greedy.index(stop)]
    streamed = "".join(c.choices[0].delta.content or "" for c in sample(
        client, messages=COLORS, temperature=0, max_tokens=40, stop=stop, stream=True))
    assert streamed == cut.choices[0].message.content and stop not in streamed


def test_a_stop_string_spanning_tokens_is_found(client):
    greedy = sample(client, messages=COLORS, temperature=0, max_tokens=40).choices[0].message.content
    word = next(word for word in ("Blue", "Yellow") if word in greedy)
    # The stop straddles the boundary between two words (and so between tokens).
    start = greedy.index(word)
    stop = greedy[start - 3:start + 2]
    cut = sample(client, messages=COLORS, temperature=0, max_tokens=40, stop=stop)
    assert cut.choices[0].message.content == greedy[:start - 3]
    assert stop not in cut.choices[0].message.content


def test_a_banned_token_never_appears(client, smollm2_dir):
    tokenizer = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    free = sample(client, messages=COLORS, temperature=0, max_tokens=30).choices[0].message.content
    banned = [token for token, _ in Counter(tokenizer.encode(free, add_special_tokens=False).ids).most_common(3)]
    answer = sample(client, messages=COLORS, temperature=0, max_tokens=30, logprobs=True,
                    logit_bias={str(token): -100 for token in banned})
    generated = {entry.token for entry in answer.choices[0].logprobs.content}
    assert not generated & {tokenizer.decode([token]) for token in banned}
    assert answer.choices[0].message.content != free


def test_greedy_picks_the_top_logprob_at_every_step(client):
    completion = sample(client, messages=COLORS, temperature=0, max_tokens=25, logprobs=True, top_logprobs=5)
    content = completion.choices[0].logprobs.content
    assert len(content) == completion.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 5
        assert entry.top_logprobs[0].token == entry.token
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        assert entry.logprob <= 0 and math.isfinite(entry.logprob)
    assert b"".join(bytes(e.bytes) for e in content).decode() == completion.choices[0].message.content


def test_streamed_logprobs_match_the_streamed_text(client):
    chunks = list(sample(client, messages=COLORS, temperature=0, max_tokens=15, logprobs=True, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert b"".join(bytes(e.bytes) for e in entries).decode() == text


def test_n_gives_indexed_independent_choices(client):
    completion = sample(client, n=3, temperature=1.0, seed=5, max_tokens=12, logprobs=True)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert len({c.message.content for c in completion.choices}) > 1
    assert completion.usage.completion_tokens == sum(len(c.logprobs.content) for c in completion.choices)


def test_n_streams_interleaved_with_the_right_indices(client):
    chunks = list(sample(client, n=3, temperature=1.0, seed=5, max_tokens=12, stream=True))
    by_index: dict[int, list] = {0: [], 1: [], 2: []}
    for chunk in chunks:
        for choice in chunk.choices:
            by_index[choice.index].append(choice)
    whole = sample(client, n=3, temperature=1.0, seed=5, max_tokens=12)
    for index, parts in by_index.items():
        assert parts[0].delta.role == "assistant"
        assert parts[-1].finish_reason in ("stop", "length")
        assert "".join(p.delta.content or "" for p in parts) == whole.choices[index].message.content


def test_frequency_penalty_reduces_repetition(client):
    def repeats(**penalty):
        content = sample(client, temperature=0, max_tokens=80, logprobs=True, **penalty).choices[0].logprobs.content
        return max(Counter(e.token for e in content).values())

    assert repeats(frequency_penalty=2.0) < repeats()


def test_presence_penalty_changes_the_answer(client):
    # 80 tokens: the GGUF-imported SmolLM2's greedy story reads the same for its first 40 with or without the
    # penalty (no token it repeats there leads by less than 2 logits).
    plain = sample(client, temperature=0, max_tokens=80).choices[0].message.content
    assert sample(client, temperature=0, max_tokens=80, presence_penalty=2.0).choices[0].message.content != plain


def test_top_k_one_is_greedy_even_at_high_temperature(client):
    greedy = sample(client, temperature=0, max_tokens=20).choices[0].message.content
    assert sample(client, temperature=1.5, max_tokens=20, extra_body={"top_k": 1}).choices[0].message.content == greedy


def test_user_and_metadata_are_accepted(client):
    completion = sample(client, max_tokens=3, user="user-1", metadata={"team": "search"})
    assert completion.usage.completion_tokens == 3
