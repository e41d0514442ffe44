"""Every sampling parameter checked by its effect on the real model, through the `openai` SDK."""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from tokenizers import Tokenizer

from tests.conftest import SMOLLM2_ALIAS
from tests.e2e.mesh import Mesh

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
    # Interleaved, not one choice after another: the index changes nearly every chunk.
    order = [choice.index for chunk in chunks for choice in chunk.choices if choice.delta.content]
    assert sum(a != b for a, b in zip(order, order[1:])) >= len(order) // 2
    for index, parts in by_index.items():
        assert parts[0].delta.role == "assistant"
        assert parts[-1].finish_reason in ("stop", "length")
        assert "".join(p.delta.content or "" for p in parts) == whole.choices[index].message.content


@pytest.fixture(scope="module")
def uncached(ingot_home, smollm2_dir) -> Mesh:
    # The penalty tests compare the logprobs of two runs of one prompt to 1e-3. A prompt-cache hit prefills the
    # prompt's tail as a chunk of its own, which moves logprobs in the third decimal (greedy answers stay the
    # same), so here both runs prefill the whole prompt.
    running = Mesh(ingot_home, env={"INGOT_PROMPT_CACHE_ENTRIES": "0"}).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def uncached_client(uncached) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{uncached.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def greedy_steps(client, **penalty) -> list:
    return sample(client, temperature=0, max_tokens=40, logprobs=True, top_logprobs=20,
                  **penalty).choices[0].logprobs.content


def comparable_steps(plain: list, penalised: list):
    """(plain top, penalised top, tokens generated before) for each step whose context is the same in both
    answers, so that the model's own logits there are equal and only the penalty tells the two apart."""
    generated: list[bytes] = []
    for before, after in zip(plain, penalised):
        yield ({bytes(t.bytes): t.logprob for t in before.top_logprobs},
               {bytes(t.bytes): t.logprob for t in after.top_logprobs}, list(generated))
        if before.token != after.token:
            return
        generated.append(bytes(before.bytes))


def test_presence_and_frequency_penalties_move_served_logprobs_by_exactly_openais_formula(uncached_client):
    client = uncached_client
    presence, frequency = 0.2, 0.1
    plain = greedy_steps(client)
    penalised = greedy_steps(client, presence_penalty=presence, frequency_penalty=frequency)
    penalised_seen = 0
    for before, after, generated in comparable_steps(plain, penalised):
        counts = Counter(generated)
        # mu[j] - c[j] * frequency - (c[j] > 0) * presence, then log-softmax: against an untouched token,
        # every token's logprob moves by exactly its penalty; the normaliser shifts all of them alike.
        shifts = [before[token] - after[token] - (counts[token] * frequency + presence if counts[token] else 0)
                  for token in before.keys() & after.keys()]
        assert max(shifts) - min(shifts) == pytest.approx(0, abs=1e-3), generated
        penalised_seen += sum(1 for token in before.keys() & after.keys() if counts[token])
    assert penalised_seen >= 10


def test_repetition_penalty_moves_served_logprobs_as_hugging_face_defines_it(uncached_client, uncached,
                                                                           smollm2_dir):
    client, mesh = uncached_client, uncached
    penalty = 1.2
    tokenizer = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    # The whole templated prompt counts as seen, as transformers penalises all of input_ids.
    ids = httpx.post(f"{mesh.base_url}/tokenize", json={"model": SMOLLM2_ALIAS, "messages": STORY}, timeout=30)
    prompt = {tokenizer.decode([i], skip_special_tokens=False).encode() for i in ids.json()["tokens"]}
    plain, penalised = greedy_steps(client), greedy_steps(client, extra_body={"repetition_penalty": penalty})
    agreeing_steps = 0
    for before, after, generated in comparable_steps(plain, penalised):
        common = before.keys() & after.keys()
        seen = {token for token in common if token in prompt or token in generated}
        # A token never seen keeps its logit: against it, the normaliser moves by one constant d.
        d = [before[token] - after[token] for token in common - seen]
        assert len(d) >= 2 and max(d) - min(d) == pytest.approx(0, abs=1e-3), generated
        # A seen token is always lowered. Its logit x (positive for this model's top tokens) becomes x / p, so
        # with logprob = x - log Z each seen token gives the plain row's log Z: they must all agree.
        assert all(before[token] - after[token] > min(d) + 1e-3 for token in seen), generated
        log_z = [(before[token] / penalty - after[token] - min(d)) / (1 - 1 / penalty) for token in seen]
        if len(log_z) >= 2:
            assert max(log_z) - min(log_z) == pytest.approx(0, abs=0.05), (generated, log_z)
            agreeing_steps += 1
    assert agreeing_steps >= 2


def test_top_k_one_is_greedy_even_at_high_temperature(client):
    greedy = sample(client, temperature=0, max_tokens=20).choices[0].message.content
    assert sample(client, temperature=1.5, max_tokens=20, extra_body={"top_k": 1}).choices[0].message.content == greedy


def test_user_and_metadata_are_accepted(client):
    completion = sample(client, max_tokens=3, user="user-1", metadata={"team": "search"})
    assert completion.usage.completion_tokens == 3
