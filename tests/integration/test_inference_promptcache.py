"""The prompt cache and n-gram drafts with the real model: the same greedy answers with and without them,
reuse across the turns of a conversation and a shared system prompt, nothing reused after a cancel.

The prompt cache on the default model, whose int8 activations make a one-token step round differently from a
prefill: a hit reuses only KV that was prefilled, and still answers as a full prefill does. Drafts on the
fp32-activation model (the default never drafts)."""

from __future__ import annotations

import asyncio

import pytest
from tokenizers import Tokenizer

from ingot.inference.v1 import inference_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from services.inference import sampling
from services.inference.engine import Engine, Sequence, asyncio_emitter
from services.inference.events import Failed, Finished, Tokens
from services.inference.promptcache import HITS, REUSED_TOKENS, PromptCache
from services.inference.speculation import DraftPolicy

SYSTEM = ("You are a careful assistant for a hardware shop. Answer in one short paragraph. Prices are in euros. "
          "The shop sells hammers, screwdrivers, drills, saws, nails, screws, glue, paint and brushes. "
          "Opening hours are nine to six on weekdays and nine to one on Saturdays. Never invent products. ") * 2
EDIT = ("Copy this list exactly, one item per line: apples, pears, plums, cherries, peaches, apricots, grapes, "
        "melons, lemons, oranges, limes, figs, dates, kiwis, mangoes, papayas, guavas, lychees, quinces, "
        "plantains, coconuts, pomegranates, blueberries, raspberries, strawberries.")


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))


def render(tokenizer, turns: list[tuple[str, str]]) -> list[int]:
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    return tokenizer.encode(text + "<|im_start|>assistant\n", add_special_tokens=False).ids


class RecordedDrafts(DraftPolicy):
    """The engine's policy, remembering the statistics of every drafting request."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled)
        self.seen: list[dict] = []

    def observe(self, model_id: str, stats: dict) -> None:
        self.seen.append(stats)
        super().observe(model_id, stats)


async def make_engine(smollm2_dir, *, cache: bool, drafts: bool = False, entries: int = 4) -> Engine:
    engine = Engine(max_active=16, max_waiting=16, prefill_chunk=64, max_batch=8,
                    prompt_cache=PromptCache(max_entries=entries if cache else 0, max_bytes=2**30, headroom=256),
                    drafts=RecordedDrafts(drafts))
    engine.start()
    await engine.ensure_loaded(registry_pb.ModelInfo(id="m", path=str(smollm2_dir), context_length=8192))
    return engine


@pytest.fixture()
async def engines(smollm2_dir):
    cached, plain = await make_engine(smollm2_dir, cache=True), await make_engine(smollm2_dir, cache=False)
    yield cached, plain
    await asyncio.to_thread(cached.stop)
    await asyncio.to_thread(plain.stop)


def submit(engine: Engine, prompt: list[int], max_tokens: int = 24) -> tuple[Sequence, asyncio.Queue]:
    events: asyncio.Queue = asyncio.Queue()
    budget = sampling.budget(len(prompt), max_tokens, context_length=8192, max_output_tokens=2048)
    options = sampling.search_options(pb.SamplingParams(temperature=0), budget.max_length)
    sequence = Sequence("m", prompt, options, budget, asyncio_emitter(asyncio.get_running_loop(), events))
    engine.submit(sequence)
    return sequence, events


async def answer(engine: Engine, prompt: list[int], max_tokens: int = 24) -> list[int]:
    _, events = submit(engine, prompt, max_tokens)
    tokens = []
    while True:
        event = await events.get()
        if isinstance(event, Tokens):
            tokens.append(event.token_id)
        elif isinstance(event, Finished):
            return tokens
        elif isinstance(event, Failed):
            raise event.error


async def kept(engine: Engine, count: int) -> bool:
    """Whether the cache holds `count` entries once the engine has dropped the finished groups (it tells
    a request it finished before it drops the request's group)."""
    for _ in range(200):
        if len(engine._prompt_cache) == count:
            return True
        await asyncio.sleep(0.01)
    return False


def hits() -> tuple[float, float]:
    return HITS.labels("m")._value.get(), REUSED_TOKENS.labels("m")._value.get()


async def test_each_turn_of_a_conversation_reuses_the_last_and_answers_as_a_full_prefill_would(engines, tokenizer):
    cached, plain = engines
    turns = [("system", SYSTEM)]
    for question in ("Do you sell drills?", "And what do they cost?", "When are you open on Saturday?"):
        turns.append(("user", question))
        prompt = render(tokenizer, turns)
        before = hits()
        reply = await answer(cached, prompt)
        assert reply == await answer(plain, prompt)
        if len(turns) > 2:
            # The history up to this turn's question came from the cache, not from a prefill.
            assert hits()[0] == before[0] + 1 and hits()[1] - before[1] > len(prompt) // 2
        turns.append(("assistant", tokenizer.decode(reply)))


async def settled(engine: Engine) -> bool:
    """Whether the engine has, while idle, prefilled the kept answers again (promptcache.settle)."""
    for _ in range(500):
        if len(engine._prompt_cache) and engine._prompt_cache.unsettled() is None:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_settled_answer_is_reused_by_the_next_turn_which_answers_as_a_full_prefill_would(engines,
                                                                                                 tokenizer):
    cached, plain = engines
    turns = [("system", SYSTEM), ("user", "Do you sell drills?")]
    first = render(tokenizer, turns)
    reply = await answer(cached, first, 30)
    assert await settled(cached)
    turns += [("assistant", tokenizer.decode(reply)), ("user", "And what do they cost?")]
    prompt = render(tokenizer, turns)
    before = hits()
    assert await answer(cached, prompt) == await answer(plain, prompt)
    # The prompt and the answer before it came from the cache: only the new question was prefilled.
    assert hits()[1] - before[1] >= len(first) + len(reply)


async def test_requests_sharing_a_system_prompt_prefill_only_their_question(engines, tokenizer):
    cached, plain = engines
    questions = ("Do you sell glue?", "What colour of paint do you have?", "Can I buy one nail?")
    for question in questions:
        prompt = render(tokenizer, [("system", SYSTEM), ("user", question)])
        assert await answer(cached, prompt) == await answer(plain, prompt)
    before = hits()
    await answer(cached, render(tokenizer, [("system", SYSTEM), ("user", "Are saws sharp?")]))
    assert hits()[0] == before[0] + 1
    assert hits()[1] - before[1] >= len(tokenizer.encode(SYSTEM, add_special_tokens=False).ids)


async def test_a_short_reuse_joins_a_burst_s_batch_instead_of_running_alone(engines, tokenizer):
    cached, plain = engines
    # Within one prefill chunk (64 here), so that they may share a batch; their common opening is reusable.
    system = ("You are the assistant of a small hardware shop in Lyon. Answer every question in one short, "
              "friendly sentence, and never invent products.")
    prompts = [render(tokenizer, [("system", system), ("user", question)])
               for question in ("Do you sell glue?", "Do you sell saws?", "Do you sell nails?", "Do you sell paint?")]
    assert max(map(len, prompts)) <= 64 and len(render(tokenizer, [("system", system)])) >= 32
    await answer(cached, prompts[0])
    assert await kept(cached, 1)
    before = hits()
    runs = [submit(cached, prompt) for prompt in prompts]
    await asyncio.sleep(0.2)
    # All four share one generator, the one that could have reused the kept prompt included.
    assert (cached.loaded()[0].active_sequences, cached.loaded()[0].batches) == (4, 1)
    assert hits()[0] == before[0]
    for _, events in runs:
        while not isinstance(await events.get(), (Finished, Failed)):
            pass
    # Alone, it reuses the kept prompt.
    await answer(cached, prompts[1])
    assert hits()[0] == before[0] + 1


async def test_a_cancelled_request_leaves_nothing_to_reuse(engines, tokenizer):
    cached, _ = engines
    prompt = render(tokenizer, [("system", SYSTEM), ("user", "Tell me about hammers.")])
    sequence, events = submit(cached, prompt, max_tokens=200)
    while not isinstance(await events.get(), Tokens):
        pass
    sequence.cancel()
    while cached.loaded()[0].active_sequences:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert len(cached._prompt_cache) == 0
    # A finished request is kept; a cancelled one that had taken it from the cache returns nothing.
    await answer(cached, prompt, 8)
    assert await kept(cached, 1)
    before = hits()
    sequence, events = submit(cached, prompt, max_tokens=100)
    while not isinstance(await events.get(), Tokens):
        pass
    assert hits()[0] == before[0] + 1
    sequence.cancel()
    while cached.loaded()[0].active_sequences:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert len(cached._prompt_cache) == 0


async def test_the_least_recently_used_conversation_is_evicted_beyond_the_entry_bound(smollm2_dir, tokenizer):
    engine = await make_engine(smollm2_dir, cache=True, entries=2)
    try:
        prompts = [render(tokenizer, [("system", f"Store number {i}. " + SYSTEM), ("user", "Hi")]) for i in range(3)]
        for prompt in prompts:
            await answer(engine, prompt, 4)
        assert await kept(engine, 2)
        before = hits()
        await answer(engine, prompts[2], 4)
        assert hits()[0] == before[0] + 1
        # The first store's conversation was the least recently used: evicted, so prefilled again.
        await answer(engine, prompts[0], 4)
        assert hits()[0] == before[0] + 1
    finally:
        await asyncio.to_thread(engine.stop)


async def test_ngram_drafts_give_the_same_greedy_answer(smollm2_exact_dir, tokenizer):
    drafting = await make_engine(smollm2_exact_dir, cache=False, drafts=True)
    plain = await make_engine(smollm2_exact_dir, cache=False)
    try:
        for text in (EDIT, SYSTEM + " Write a short poem about a shop."):
            prompt = render(tokenizer, [("user", text)])
            assert len(prompt) >= 64
            assert await answer(drafting, prompt, 60) == await answer(plain, prompt, 60)
        # The copy was drafted and verified, most drafts accepted.
        assert drafting._drafts.seen[0]["draft_tokens_accepted"] > 10
    finally:
        await asyncio.to_thread(drafting.stop)
        await asyncio.to_thread(plain.stop)


async def test_a_model_with_int8_activations_never_drafts(smollm2_dir, tokenizer):
    # Verifying a draft computes several tokens in one step, which int8 activations round differently
    # from decoding one: drafts would change its answers.
    drafting = await make_engine(smollm2_dir, cache=False, drafts=True)
    try:
        assert not drafting.loaded()[0].steps_agree
        await answer(drafting, render(tokenizer, [("user", EDIT)]), 30)
        assert drafting._drafts.seen == []
    finally:
        await asyncio.to_thread(drafting.stop)
