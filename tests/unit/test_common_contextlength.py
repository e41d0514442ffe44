"""OpenAI's context-length rule, as the edge's completions and the inference service both apply it."""

from __future__ import annotations

import pytest

from ingot.common import contextlength
from ingot.common.errors import InvalidArgument


def test_the_room_left_is_the_context_less_the_prompt():
    assert contextlength.room(30, 100, where="the prompt", param="prompt", advice=".") == 70


def test_a_prompt_that_fills_the_context_is_refused_on_the_callers_prompt_parameter():
    with pytest.raises(InvalidArgument) as caught:
        contextlength.room(100, 100, where="the prompt", param="messages", advice=". Shorten the messages.")
    assert (caught.value.param, caught.value.code) == ("messages", "context_length_exceeded")
    assert caught.value.message == ("This model's maximum context length is 100 tokens, but the prompt has 100 "
                                    "tokens. Shorten the messages.")


def test_a_completion_that_does_not_fit_is_refused_on_max_tokens_with_both_counts():
    error = contextlength.too_long(30, 80, 100, where="the messages", advice="Reduce it.")
    assert (error.param, error.code) == ("max_tokens", "context_length_exceeded")
    assert "you requested 110 tokens (30 in the messages, 80 in the completion)" in error.message
