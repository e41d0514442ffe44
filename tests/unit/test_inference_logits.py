"""The logits processor against the published definitions, on hand-made logits.

OpenAI (https://platform.openai.com/docs/advanced-usage, "Frequency and presence penalties"):
    mu[j] -> mu[j] - c[j] * alpha_frequency - float(c[j] > 0) * alpha_presence
with c[j] how often token j was generated so far. Hugging Face's `repetition_penalty`
(transformers' RepetitionPenaltyLogitsProcessor, from CTRL): every token already in the sequence, prompt
included, has its logit divided by the penalty where it is positive and multiplied by it where negative.
"""

from __future__ import annotations

import numpy as np
import pytest

from ingot.common.errors import InvalidArgument
from ingot.inference.v1 import inference_service_pb2 as pb
from services.inference.logits import LogitsProcessor, log_softmax
from services.inference.sampling import logits_processor

LOGITS = np.array([2.0, -1.0, 0.5, 3.0, -2.5, 0.0, 1.25, -0.75], dtype=np.float32)


def processed(processor: LogitsProcessor, generated: list[int]) -> np.ndarray:
    for token in generated:
        processor.observe(token)
    row = LOGITS.copy()
    processor.apply(row)
    return row


def openai_reference(generated: list[int], presence: float, frequency: float) -> np.ndarray:
    counts = np.bincount(generated, minlength=LOGITS.size).astype(np.float32)
    return LOGITS - counts * frequency - (counts > 0).astype(np.float32) * presence


def hugging_face_reference(seen: set[int], penalty: float) -> np.ndarray:
    expected = LOGITS.copy()
    for token in seen:
        expected[token] = expected[token] * penalty if expected[token] < 0 else expected[token] / penalty
    return expected


@pytest.mark.parametrize(("presence", "frequency"), [(0.7, 0.0), (0.0, 0.4), (0.7, 0.4), (-1.5, 2.0)])
def test_presence_and_frequency_penalties_follow_openais_formula(presence, frequency):
    generated = [3, 3, 3, 1, 0, 3, 1]
    processor = LogitsProcessor(presence_penalty=presence, frequency_penalty=frequency)
    np.testing.assert_allclose(processed(processor, generated), openai_reference(generated, presence, frequency),
                               rtol=0, atol=1e-6)


def test_the_presence_penalty_counts_a_token_once_and_the_frequency_penalty_per_occurrence():
    generated = [3, 3, 3, 0]
    presence = processed(LogitsProcessor(presence_penalty=1.0), generated)
    frequency = processed(LogitsProcessor(frequency_penalty=1.0), generated)
    assert LOGITS[3] - presence[3] == pytest.approx(1.0) and LOGITS[3] - frequency[3] == pytest.approx(3.0)
    assert LOGITS[0] - presence[0] == pytest.approx(1.0) and LOGITS[0] - frequency[0] == pytest.approx(1.0)
    untouched = [1, 2, 4, 5, 6, 7]
    np.testing.assert_array_equal(presence[untouched], LOGITS[untouched])
    np.testing.assert_array_equal(frequency[untouched], LOGITS[untouched])


@pytest.mark.parametrize("penalty", [1.3, 0.6])
def test_repetition_penalty_follows_hugging_faces_definition_over_prompt_and_output(penalty):
    # Token 0 (positive) and 4 (negative) are in the prompt, 1 (negative) and 6 (positive) generated.
    processor = LogitsProcessor(repetition_penalty=penalty, prompt=[0, 4, 4])
    np.testing.assert_allclose(processed(processor, [1, 6, 6]), hugging_face_reference({0, 4, 1, 6}, penalty),
                               rtol=0, atol=1e-6)


def test_repetition_penalty_matches_transformers_own_processor():
    torch = pytest.importorskip("torch", reason="transformers' own processor needs the build extra (torch)")
    transformers = pytest.importorskip("transformers", reason="transformers' own processor needs the build extra")
    prompt, generated = [0, 4, 2], [5, 1, 1]
    theirs = transformers.RepetitionPenaltyLogitsProcessor(1.7)(
        torch.tensor([prompt + generated]), torch.tensor(LOGITS[None, :].copy()))[0].numpy()
    ours = processed(LogitsProcessor(repetition_penalty=1.7, prompt=prompt), generated)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_repetition_penalty_is_applied_before_the_bias_and_the_penalties():
    # On the model's own logits, as transformers applies it; a bias then shifts the penalised value.
    processor = LogitsProcessor(logit_bias={3: 1.0}, presence_penalty=0.5, repetition_penalty=2.0, prompt=[3])
    row = processed(processor, [3])
    assert row[3] == pytest.approx(LOGITS[3] / 2.0 + 1.0 - 0.5)


def test_a_bias_of_minus_100_bans_and_others_add():
    row = processed(LogitsProcessor(logit_bias={2: -100.0, 6: 2.5, 1: -3.0}), [])
    assert row[2] == -np.inf
    assert row[6] == pytest.approx(LOGITS[6] + 2.5) and row[1] == pytest.approx(LOGITS[1] - 3.0)


def test_a_penalty_shifts_logprobs_by_exactly_its_size_against_untouched_tokens():
    # What the end-to-end test reads from served logprobs: gaps to an untouched token move by the penalty.
    before = log_softmax(LOGITS.copy())
    after = log_softmax(processed(LogitsProcessor(presence_penalty=0.3, frequency_penalty=0.2), [3, 3]))
    assert (before[3] - before[5]) - (after[3] - after[5]) == pytest.approx(0.3 + 2 * 0.2, abs=1e-5)
    assert (before[0] - before[5]) - (after[0] - after[5]) == pytest.approx(0.0, abs=1e-6)


def test_the_request_builds_the_processor_with_the_prompt_and_a_neutral_one_is_none():
    params = pb.SamplingParams(repetition_penalty=1.5)
    processor = logits_processor(params, vocab_size=LOGITS.size, prompt=[0, 1])
    assert processor is not None
    np.testing.assert_allclose(processed(processor, []), hugging_face_reference({0, 1}, 1.5), atol=1e-6)
    assert logits_processor(pb.SamplingParams(repetition_penalty=1.0), vocab_size=8, prompt=[0]) is None
    assert logits_processor(pb.SamplingParams(), vocab_size=8) is None
    with pytest.raises(InvalidArgument) as caught:
        logits_processor(pb.SamplingParams(presence_penalty=2.5), vocab_size=8)
    assert caught.value.param == "presence_penalty"
