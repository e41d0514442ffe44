"""POST /v1/completions through the `openai` SDK, each parameter checked by its effect on the real model. A
string prompt is continued as written (no chat template), as OpenAI's completions continue text.

The mesh here serves a cache of three entries that share SmolLM2's weights (linked, not copied): SmolLM2
itself; a deployment of it whose context is only SHORT_CONTEXT tokens, so that overflowing the context
takes a short prompt; and one whose tokenizer spells three unused special tokens as fill-in-the-middle
markers, so that a suffix has markers to be placed between.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import SMOLLM2_ALIAS, SMOLLM2_EXACT_ALIAS, SMOLLM2_ID
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e

SHORT_ALIAS = "smollm2-short-context"
SHORT_CONTEXT = 64
FIM_ALIAS = "smollm2-fim"
# SmolLM2's ids 3 to 5 are special tokens its chat never uses (<repo_name>, <reponame>, <file_sep>).
FIM_MARKERS = {3: "<fim_prefix>", 4: "<fim_suffix>", 5: "<fim_middle>"}

COLORS = "The primary colors are red, blue and"
CAPITAL = "The capital of France is"
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"


def _linked_copy(source: Path, target: Path, name: str, alias: str, **manifest: object) -> None:
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).symlink_to(path)
    (target / "inference_model.json").unlink()
    data = json.loads((source / "inference_model.json").read_text())
    data.update(Name=name, Alias=alias, **manifest)
    (target / "inference_model.json").write_text(json.dumps(data))


def _with_fim_markers(folder: Path) -> None:
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    for added in tokenizer["added_tokens"]:
        if added["id"] in FIM_MARKERS:
            vocab.pop(added["content"], None)
            added["content"] = FIM_MARKERS[added["id"]]
            vocab[added["content"]] = added["id"]
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))


@pytest.fixture(scope="module")
def home(tmp_path_factory, smollm2_dir: Path, smollm2_exact_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("completions-home")
    publisher = home / "models" / smollm2_dir.parent.name
    publisher.mkdir(parents=True)
    for folder in (smollm2_dir, smollm2_exact_dir):
        (publisher / folder.name).symlink_to(folder, target_is_directory=True)
    _linked_copy(smollm2_dir, publisher / "SmolLM2-135M-Instruct-short-generic-cpu-1",
                 "SmolLM2-135M-Instruct-short-generic-cpu:1", SHORT_ALIAS, ContextLength=SHORT_CONTEXT)
    fim = publisher / "SmolLM2-135M-Instruct-fim-generic-cpu-1"
    _linked_copy(smollm2_dir, fim, "SmolLM2-135M-Instruct-fim-generic-cpu:1", FIM_ALIAS)
    _with_fim_markers(fim)
    return home


@pytest.fixture(scope="module")
def mesh(home: Path):
    running = Mesh(home).start()
    yield running
    running.stop()


def complete(client, **params):
    params.setdefault("model", SMOLLM2_ALIAS)
    params.setdefault("max_tokens", 12)
    return client.completions.create(**params)


def tokenize(mesh, **body) -> dict:
    response = httpx.post(f"{mesh.base_url}/tokenize", json={"model": SMOLLM2_ALIAS, **body}, timeout=30)
    response.raise_for_status()
    return response.json()


def test_the_answer_is_a_real_text_completion(client):
    completion = complete(client, prompt=CAPITAL, temperature=0, max_tokens=8)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.model == SMOLLM2_ID
    assert completion.choices[0].text.startswith(" Paris")
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_batch_numbers_its_choices_prompt_by_prompt(client):
    # The exact model: with int8 activations a batched row's greedy answer may differ from its lone one.
    exact = {"model": SMOLLM2_EXACT_ALIAS, "temperature": 0}
    prompts = [COLORS, CAPITAL]
    alone = [complete(client, prompt=prompt, **exact).choices[0].text for prompt in prompts]
    assert alone[0] != alone[1]
    batch = complete(client, prompt=prompts, n=2, **exact)
    assert [choice.index for choice in batch.choices] == [0, 1, 2, 3]
    assert [choice.text for choice in batch.choices] == [alone[0], alone[0], alone[1], alone[1]]
    singles = [complete(client, prompt=prompt, **exact).usage for prompt in prompts]
    assert batch.usage.prompt_tokens == sum(usage.prompt_tokens for usage in singles)
    assert batch.usage.completion_tokens == 2 * sum(usage.completion_tokens for usage in singles)


def test_a_streamed_batch_matches_the_whole_one(client):
    prompts = [COLORS, CAPITAL]
    whole = complete(client, prompt=prompts, n=2, temperature=0)
    texts = {index: "" for index in range(4)}
    finishes = {}
    usage = None
    for chunk in complete(client, prompt=prompts, n=2, temperature=0, stream=True,
                          stream_options={"include_usage": True}):
        assert chunk.object == "text_completion"
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
        usage = chunk.usage or usage
    assert [texts[index] for index in range(4)] == [choice.text for choice in whole.choices]
    assert finishes == {choice.index: choice.finish_reason for choice in whole.choices}
    assert usage.model_dump() == whole.usage.model_dump()


def test_max_tokens_cuts_with_finish_reason_length(client):
    completion = complete(client, prompt=COUNTING, max_tokens=4)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 4


def test_echo_with_logprobs_scores_the_prompt_too(client):
    prompt = "The capital of France is"
    completion = complete(client, prompt=prompt, echo=True, logprobs=3, max_tokens=5, temperature=0)
    choice = completion.choices[0]
    logprobs = choice.logprobs
    assert choice.text.startswith(prompt) and len(choice.text) > len(prompt)
    assert "".join(logprobs.tokens) == choice.text
    assert len(logprobs.tokens) == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(lp <= 0 and math.isfinite(lp) for lp in logprobs.token_logprobs[1:])
    assert all(1 <= len(top) <= 4 for top in logprobs.top_logprobs[1:])
    offsets = [sum(len(token) for token in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))]
    assert logprobs.text_offset == offsets
    # Greedy: each generated token is the most likely one.
    for token, top in zip(logprobs.tokens[-5:], logprobs.top_logprobs[-5:]):
        assert max(top, key=top.get) == token


def test_a_prompt_tokens_logprob_is_what_generating_it_scored(client, mesh):
    # The exact model: scoring a prompt steps one token at a time, which int8 activations round differently
    # from the prefill that scored the generated token (logits differ by up to 0.5).
    prompt = "The capital of France is"
    generated = complete(client, prompt=prompt, max_tokens=1, logprobs=1, temperature=0,
                         model=SMOLLM2_EXACT_ALIAS).choices[0].logprobs
    token, logprob = generated.tokens[0], generated.token_logprobs[0]
    echoed = complete(client, prompt=prompt + token, echo=True, logprobs=1, max_tokens=1, temperature=0,
                      model=SMOLLM2_EXACT_ALIAS).choices[0].logprobs
    position = tokenize(mesh, prompt=prompt)["count"]
    assert echoed.tokens[position] == token
    assert echoed.token_logprobs[position] == pytest.approx(logprob, abs=0.05)


def test_streamed_echo_sends_the_prompt_first(client):
    chunks = list(complete(client, prompt=COUNTING, echo=True, stream=True, max_tokens=5))
    assert chunks[0].choices[0].text == COUNTING
    assert "".join(chunk.choices[0].text for chunk in chunks).startswith(COUNTING)


def test_a_stop_string_ends_the_text_and_never_appears(client):
    greedy = complete(client, prompt=COLORS, temperature=0, max_tokens=40).choices[0].text
    stop = next(word for word in ("green", "Green", "yellow", "colors") if word in greedy)
    cut = complete(client, prompt=COLORS, temperature=0, max_tokens=40, stop=[stop, "@@@"]).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.text == greedy[:greedy.index(stop)]


def test_the_same_seed_repeats_and_another_differs(client):
    def text(seed):
        return complete(client, prompt=COLORS, temperature=1.0, max_tokens=30, seed=seed).choices[0].text

    first = text(1234)
    assert text(1234) == first
    assert text(98765) != first


def test_top_k_one_and_a_tiny_top_p_are_greedy_at_high_temperature(client):
    greedy = complete(client, prompt=COLORS, temperature=0, max_tokens=20).choices[0].text
    assert complete(client, prompt=COLORS, temperature=1.5, max_tokens=20,
                    extra_body={"top_k": 1}).choices[0].text == greedy
    assert complete(client, prompt=COLORS, temperature=1.5, max_tokens=20, top_p=1e-6).choices[0].text == greedy


def test_a_string_prompt_is_continued_as_written(client, mesh):
    raw = complete(client, prompt=COUNTING, temperature=0, max_tokens=8)
    assert raw.usage.prompt_tokens == tokenize(mesh, prompt=COUNTING)["count"]
    assert raw.choices[0].text.startswith(" 13, 14")


def test_echo_returns_the_prompt_as_sent(client):
    for prompt in (COUNTING, "  odd\tspacing,\n and a newline:"):
        echoed = complete(client, prompt=prompt, temperature=0, max_tokens=4, echo=True)
        plain = complete(client, prompt=prompt, temperature=0, max_tokens=4)
        assert echoed.choices[0].text == prompt + plain.choices[0].text


def test_use_raw_prompt_false_asks_for_the_chat_template(client, mesh):
    raw = complete(client, prompt=COLORS, temperature=0, max_tokens=20)
    templated = complete(client, prompt=COLORS, temperature=0, max_tokens=20, extra_body={"use_raw_prompt": False})
    assert templated.choices[0].text != raw.choices[0].text
    assert templated.usage.prompt_tokens == tokenize(mesh, messages=[{"role": "user", "content": COLORS}])["count"]


def test_a_token_id_prompt_is_the_text_it_encodes(client, mesh):
    tokens = tokenize(mesh, prompt=COUNTING)["tokens"]
    by_ids = complete(client, prompt=tokens, temperature=0)
    by_text = complete(client, prompt=COUNTING, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == len(tokens)
    echoed = complete(client, prompt=tokens, temperature=0, echo=True, max_tokens=1)
    assert echoed.choices[0].text.startswith(COUNTING)


def test_context_overflow_is_400_unless_truncating(client, mesh):
    prompt_tokens = tokenize(mesh, prompt=COUNTING)["count"]
    assert prompt_tokens < SHORT_CONTEXT
    with pytest.raises(openai.BadRequestError) as caught:
        complete(client, model=SHORT_ALIAS, prompt=COUNTING, max_tokens=SHORT_CONTEXT)
    assert caught.value.body["param"] == "max_tokens"
    assert caught.value.body["code"] == "context_length_exceeded"
    truncated = complete(client, model=SHORT_ALIAS, prompt=COUNTING, max_tokens=SHORT_CONTEXT, temperature=0,
                         extra_body={"error_behavior": "truncate"})
    assert truncated.choices[0].finish_reason == "length"
    assert truncated.usage.prompt_tokens == prompt_tokens
    assert truncated.usage.total_tokens == SHORT_CONTEXT


def test_a_prompt_longer_than_the_context_is_400_even_when_truncating(client):
    for behavior in ("error", "truncate"):
        with pytest.raises(openai.BadRequestError) as caught:
            complete(client, model=SHORT_ALIAS, prompt=COUNTING * 4,
                     extra_body={"error_behavior": behavior})
        assert caught.value.body["param"] == "prompt"


def test_suffix_places_the_prompt_and_suffix_around_the_fim_markers(client, mesh):
    prefix, suffix = "def add(a, b):\n    ", "\n    return total\n"
    completion = complete(client, model=FIM_ALIAS, prompt=prefix, suffix=suffix, temperature=0, max_tokens=8)
    parts = [tokenize(mesh, model=FIM_ALIAS, prompt=text, add_special_tokens=False)["count"]
             for text in (prefix, suffix)]
    assert completion.usage.prompt_tokens == sum(parts) + 3
    assert completion.choices[0].finish_reason in ("stop", "length")
    # The markers are special tokens: the middle comes back as text, never as a marker.
    assert not any(marker in completion.choices[0].text for marker in FIM_MARKERS.values())


def test_suffix_on_a_model_without_fim_tokens_is_400_on_suffix(client):
    with pytest.raises(openai.BadRequestError) as caught:
        complete(client, prompt="def add(a, b):", suffix="return total")
    assert caught.value.body["param"] == "suffix"
