"""The pure parts of text completions: request checks, batch numbering, context fitting, legacy logprobs."""

from __future__ import annotations

import asyncio
import json

import pytest

from edge.openai.completions import fit
from edge.mesh.convert import LegacyLogprobs
from edge.openai.generation import Choices, choice_index, merged
from edge.openai.parsing import parse_completion_request
from ingot.common.errors import InvalidArgument
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb


def parse(**fields):
    return parse_completion_request(json.dumps({"model": "m", **fields}).encode())


@pytest.mark.parametrize(("prompt", "batch"), [
    ("hi", ["hi"]),
    (["a", "b"], ["a", "b"]),
    ([1, 2, 3], [[1, 2, 3]]),
    ([[1, 2], [3]], [[1, 2], [3]]),
    ("", [""]),
])
def test_every_prompt_shape_is_a_batch(prompt, batch) -> None:
    assert parse(prompt=prompt).prompt == batch


@pytest.mark.parametrize(("fields", "param"), [
    ({}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [[]]}, "prompt"),
    ({"prompt": [1, -2]}, "prompt"),
    ({"prompt": [True]}, "prompt"),
    ({"prompt": [1.5]}, "prompt"),
    ({"prompt": {"text": "hi"}}, "prompt"),
    ({"prompt": ["x"] * 65}, "prompt"),
    ({"prompt": "x", "logprobs": 6}, "logprobs"),
    ({"prompt": "x", "logprobs": -1}, "logprobs"),
    ({"prompt": "x", "logprobs": True}, "logprobs"),
    ({"prompt": "x", "echo": "yes"}, "echo"),
    ({"prompt": "x", "suffix": 3}, "suffix"),
    ({"prompt": "x", "suffix": "end", "echo": True}, "suffix"),
    ({"prompt": "x", "use_raw_prompt": 1}, "use_raw_prompt"),
    ({"prompt": "x", "error_behavior": "ignore"}, "error_behavior"),
    ({"prompt": ["x"] * 8, "n": 9}, "n"),
    ({"prompt": "x", "n": 17}, "n"),
    ({"prompt": "x", "best_of": 2}, "best_of"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "top_k": 0}, "top_k"),
    ({"prompt": "x", "temperature": 2.5}, "temperature"),
    ({"prompt": "x", "stop": ["a", ""]}, "stop"),
    ({"prompt": "x", "seed": "1"}, "seed"),
])
def test_invalid_values_name_their_parameter(fields, param) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(**fields)
    assert caught.value.param == param


def test_unset_options_are_null_and_extras_parse() -> None:
    request = parse(prompt="x", suffix=None, logprobs=0, use_raw_prompt=True, error_behavior="truncate")
    assert request.logprobs == 0 and request.use_raw_prompt and request.truncate and request.suffix is None


def test_a_batch_is_numbered_prompt_by_prompt() -> None:
    assert [choice_index(p, i, 3) for p in range(2) for i in range(3)] == [0, 1, 2, 3, 4, 5]
    choices = Choices([4, 6], n=2)
    index, state = choices.add(1, pb.GenerateResponse(index=1, text="x", token_ids=[9]))
    assert index == 3 and state is choices.states[3] and state.text == ["x"]


def test_usage_counts_each_prompt_once_and_every_choice() -> None:
    choices = Choices([4, 6], n=2)
    for position in range(2):
        for index in range(2):
            choices.add(position, pb.GenerateResponse(
                index=index, token_ids=[1, 2], finish_reason=common_pb2.FINISH_REASON_STOP,
                usage=common_pb2.Usage(prompt_tokens=5, completion_tokens=2 + index)))
    assert choices.usage().model_dump() == {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
    assert choices.finish_reasons() == ["stop"] * 4


def test_a_choice_index_beyond_n_is_an_internal_error() -> None:
    with pytest.raises(Exception, match="choice 2 of 2"):
        Choices([1], n=2).add(0, pb.GenerateResponse(index=2))


def test_fit_passes_what_fits_and_clips_only_when_truncating() -> None:
    assert fit(10, 20, 100, truncate=False) == 20
    assert fit(10, None, 100, truncate=False) is None
    assert fit(10, 500, 100, truncate=True) == 90
    assert fit(10, 500, 0, truncate=False) == 500  # context unknown: the inference service decides


def test_fit_overflow_names_max_tokens_and_a_prompt_that_alone_overflows_names_prompt() -> None:
    with pytest.raises(InvalidArgument) as caught:
        fit(10, 91, 100, truncate=False)
    assert (caught.value.param, caught.value.code) == ("max_tokens", "context_length_exceeded")
    for truncate in (False, True):
        with pytest.raises(InvalidArgument) as caught:
            fit(100, None, 100, truncate=truncate)
        assert caught.value.param == "prompt"


def entry(token: str, logprob: float, *alternatives: tuple[str, float], raw: bytes | None = None) -> pb.TokenLogprob:
    return pb.TokenLogprob(token=token, logprob=logprob, bytes=token.encode() if raw is None else raw,
                           top_logprobs=[pb.TopLogprob(token=t, logprob=lp) for t, lp in alternatives])


def test_legacy_logprobs_list_the_sampled_token_among_the_top_ones() -> None:
    shaped = LegacyLogprobs().add([entry(" Paris", -0.25, (" Paris", -0.25), (" Lyon", -2.0)),
                                   entry(".", -1.5, ("!", -0.5))])
    assert shaped.model_dump() == {
        "tokens": [" Paris", "."], "token_logprobs": [-0.25, -1.5],
        "top_logprobs": [{" Paris": -0.25, " Lyon": -2.0}, {"!": -0.5, ".": -1.5}],
        "text_offset": [0, 6],
    }


def test_an_echoed_prompts_first_token_has_no_logprob() -> None:
    shaped = LegacyLogprobs().add([entry(" cat", -4.0)], unscored_first="The")
    assert shaped.tokens == ["The", " cat"]
    assert shaped.token_logprobs == [None, -4.0]
    assert shaped.top_logprobs == [None, {" cat": -4.0}]
    assert shaped.text_offset == [0, 3]


def test_text_offsets_run_on_across_chunks_and_count_characters_not_bytes() -> None:
    builder = LegacyLogprobs()
    e_acute = "é".encode()
    first = builder.add([entry("caf", -1.0), entry("\ufffd", -1.0, raw=e_acute[:1])])
    second = builder.add([entry("\ufffd", -1.0, raw=e_acute[1:]), entry("!", -1.0)])
    # Both halves of é start where é starts; "!" comes after one character, not two bytes.
    assert first.text_offset == [0, 3]
    assert second.text_offset == [3, 4]


class FakeCall:
    def __init__(self, messages, error: Exception | None = None, hang: bool = False) -> None:
        self._messages, self._error, self._hang = messages, error, hang
        self.finished = asyncio.Event()
        self.cancelled = False

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    async def __aiter__(self):
        try:
            for message in self._messages:
                yield message
            if self._error:
                raise self._error
            if self._hang:
                await asyncio.Event().wait()
        finally:
            self.finished.set()


async def test_merged_tags_every_message_with_its_call() -> None:
    calls = [FakeCall([pb.GenerateResponse(text="a"), pb.GenerateResponse(text="b")]),
             FakeCall([pb.GenerateResponse(text="c")])]
    seen = sorted([(position, message.text) async for position, message in merged(calls)])
    assert seen == [(0, "a"), (0, "b"), (1, "c")]


async def test_merged_ends_with_the_first_failure_and_cancels_the_rest() -> None:
    hanging = FakeCall([pb.GenerateResponse(text="x")], hang=True)
    failing = FakeCall([], error=InvalidArgument("bad", param="prompt"))
    stream = merged([hanging, failing])
    with pytest.raises(InvalidArgument):
        async for _ in stream:
            pass
    await asyncio.wait_for(hanging.finished.wait(), 5)
    assert hanging.cancelled
