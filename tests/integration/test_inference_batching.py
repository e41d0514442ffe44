"""The engine's scheduler with the real model: batching, cancellation inside a batch, fairness.

On SmolLM2 with fp32 activations, whose answers do not depend on how many rows a step computes; with int8
activations (the default model) a batched row's kernel rounds differently from a lone one's."""

from __future__ import annotations

import asyncio

import pytest
from tokenizers import Tokenizer

from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from services.inference import sampling
from services.inference.engine import Engine, Sequence, asyncio_emitter
from services.inference.events import Failed, Finished, Tokens

QUESTIONS = ["Name three primary colors.", "Write a haiku about the sea and the wind.", "What is 2+2?",
             "Tell me a story about a dragon who learns to paint."]


@pytest.fixture(scope="module")
def encode(smollm2_exact_dir):
    tokenizer = Tokenizer.from_file(str(smollm2_exact_dir / "tokenizer.json"))
    return lambda q: tokenizer.encode(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n",
                                      add_special_tokens=False).ids


@pytest.fixture()
async def engine(smollm2_exact_dir):
    made = Engine(max_active=16, max_waiting=16, prefill_chunk=64, max_batch=8)
    info = registry_pb.ModelInfo(id="m", path=str(smollm2_exact_dir), context_length=8192, size_bytes=1)
    made.start()
    await made.ensure_loaded(info)
    yield made
    await asyncio.to_thread(made.stop)


class Run:
    """One submitted sequence and what came back for it."""

    def __init__(self, engine: Engine, prompt: list[int], max_tokens: int, **params):
        self.events: asyncio.Queue = asyncio.Queue()
        budget = sampling.budget(len(prompt), max_tokens, context_length=8192, max_output_tokens=2048)
        options = sampling.search_options(pb.SamplingParams(**params), budget.max_length)
        self.sequence = Sequence("m", prompt, options, budget, asyncio_emitter(asyncio.get_running_loop(), self.events))
        self.tokens: list[int] = []
        engine.submit(self.sequence)

    async def result(self) -> tuple[list[int], int]:
        while True:
            event = await self.events.get()
            if isinstance(event, Tokens):
                self.tokens.append(event.token_id)
            elif isinstance(event, Finished):
                return self.tokens, event.reason
            elif isinstance(event, Failed):
                raise event.error


async def solo_answers(engine, encode, max_tokens=24):
    answers = []
    for question in QUESTIONS:
        answers.append(await Run(engine, encode(question), max_tokens, temperature=0).result())
    return answers


async def test_greedy_requests_share_one_batch_and_answer_as_they_would_alone(engine, encode):
    alone = await solo_answers(engine, encode)
    runs = [Run(engine, encode(q), 24, temperature=0) for q in QUESTIONS]
    await asyncio.sleep(0.2)
    model = engine.loaded()[0]
    assert (model.active_sequences, model.batches) == (4, 1)
    assert [await run.result() for run in runs] == alone


async def test_rows_of_a_batch_finish_on_their_own_budgets(engine, encode):
    runs = [Run(engine, encode(q), limit, temperature=0) for q, limit in zip(QUESTIONS, (3, 30, 5, 30))]
    results = [await run.result() for run in runs]
    assert [len(tokens) for tokens, _ in results][0::2] == [3, 5]
    assert results[0][1] == common_pb2.FINISH_REASON_LENGTH


async def test_cancelling_one_row_stops_it_and_leaves_the_others_untouched(engine, encode):
    alone = await solo_answers(engine, encode)
    runs = [Run(engine, encode(q), 24, temperature=0) for q in QUESTIONS]
    while len(runs[1].tokens) < 3:
        event = await runs[1].events.get()
        if isinstance(event, Tokens):
            runs[1].tokens.append(event.token_id)
    runs[1].sequence.cancel()
    # The engine reads the flag between steps: at most the step already running adds a token.
    at_cancel = runs[1].sequence.generated
    await asyncio.sleep(0.3)
    assert runs[1].sequence.finished  # retired: it no longer counts against the model's active sequences
    for index in (0, 2, 3):
        assert await runs[index].result() == alone[index]
    after = []
    while not runs[1].events.empty():
        after.append(runs[1].events.get_nowait())
    assert not any(isinstance(event, Finished) for event in after)
    assert runs[1].sequence.generated <= at_cancel + 1 < 24
    assert len(runs[1].tokens) + sum(isinstance(event, Tokens) for event in after) == runs[1].sequence.generated


async def test_seeded_sampling_gets_a_generator_of_its_own(engine, encode):
    runs = [Run(engine, encode(QUESTIONS[3]), 20, temperature=1.0, seed=s) for s in (1, 2, 3)]
    await asyncio.sleep(0.2)
    assert engine.loaded()[0].batches == 3
    results = [await run.result() for run in runs]
    assert results[0] == await Run(engine, encode(QUESTIONS[3]), 20, temperature=1.0, seed=1).result()


async def test_a_request_arriving_during_a_batch_starts_before_the_batch_ends(engine, encode):
    runs = [Run(engine, encode(QUESTIONS[3]), 200, temperature=0) for _ in range(4)]
    await asyncio.sleep(0.3)
    late = Run(engine, encode(QUESTIONS[0]), 3, temperature=0)
    await late.result()
    assert all(not run.sequence.finished for run in runs)
    for run in runs:
        run.sequence.cancel()


async def test_a_prompt_longer_than_a_prefill_chunk_runs_alone_and_chunked(engine, encode):
    long_prompt = encode("Repeat after me: " + "the quick brown fox jumps over the lazy dog " * 12)
    assert len(long_prompt) > 64
    alone = await Run(engine, long_prompt, 8, temperature=0).result()
    runs = [Run(engine, long_prompt, 8, temperature=0), Run(engine, encode(QUESTIONS[0]), 8, temperature=0),
            Run(engine, encode(QUESTIONS[2]), 8, temperature=0)]
    await asyncio.sleep(0.1)
    assert engine.loaded()[0].batches == 2
    assert await runs[0].result() == alone


async def test_requests_arriving_within_the_batch_window_share_a_batch(smollm2_dir, encode):
    windowed = Engine(max_active=16, max_waiting=16, prefill_chunk=64, max_batch=8, batch_window=0.3)
    windowed.start()
    try:
        await windowed.ensure_loaded(registry_pb.ModelInfo(id="m", path=str(smollm2_dir), context_length=8192))
        first = Run(windowed, encode(QUESTIONS[0]), 20, temperature=0)
        await asyncio.sleep(0.05)
        second = Run(windowed, encode(QUESTIONS[2]), 20, temperature=0)
        while windowed.loaded()[0].active_sequences < 2:
            await asyncio.sleep(0.01)
        assert windowed.loaded()[0].batches == 1
        await first.result(), await second.result()
    finally:
        await asyncio.to_thread(windowed.stop)


@pytest.fixture()
async def windowed(smollm2_dir):
    """An engine that holds requests up to 0.1 s after the latest arrival (at most 0.4 s), 8 rows a batch."""
    made = Engine(max_active=16, max_waiting=16, prefill_chunk=64, max_batch=8, batch_window=0.1)
    made.start()
    await made.ensure_loaded(registry_pb.ModelInfo(id="m", path=str(smollm2_dir), context_length=8192))
    yield made
    await asyncio.to_thread(made.stop)


async def until_active(engine: Engine, count: int) -> None:
    while engine.loaded()[0].active_sequences < count:
        await asyncio.sleep(0.005)


async def test_a_burst_spread_over_more_than_one_window_still_shares_a_batch(windowed, encode):
    runs = []
    for question in QUESTIONS[:3]:
        runs.append(Run(windowed, encode(question), 8, temperature=0))
        await asyncio.sleep(0.06)
    await until_active(windowed, 3)
    assert windowed.loaded()[0].batches == 1
    for run in runs:
        await run.result()


async def test_a_steady_trickle_never_holds_the_first_request_past_four_windows(windowed, encode):
    first = Run(windowed, encode(QUESTIONS[0]), 200, temperature=0)
    others = []
    while not first.sequence.model:
        others.append(Run(windowed, encode(QUESTIONS[2]), 200, temperature=0))
        await asyncio.sleep(0.07)
    # Started by the cap, not by a full batch: each arrival came within one window of the one before.
    assert len(others) + 1 < 8
    for run in [first, *others]:
        run.sequence.cancel()


async def test_a_burst_larger_than_a_batch_starts_a_full_batch_and_keeps_the_rest_together(windowed, encode):
    runs = [Run(windowed, encode(QUESTIONS[i % 4]), 60, temperature=0) for i in range(9)]
    await asyncio.sleep(0.05)
    runs += [Run(windowed, encode(QUESTIONS[i % 4]), 60, temperature=0) for i in range(3)]
    await until_active(windowed, 12)
    # 8 at once; the ninth waits for the three behind it rather than starting a generator of its own.
    assert windowed.loaded()[0].batches == 2
    for run in runs:
        run.sequence.cancel()
