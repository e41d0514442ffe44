from __future__ import annotations

import asyncio

import pytest

from edge.shared.contentsafety import TermListFilter, check_prompt, watch_output
from ingot.common.errors import InvalidArgument
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb

CONFIG = {"thresholds": {"violence": "medium", "self_harm": "low"},
          "terms": {"violence": {"high": ["build a bomb"], "low": ["punch"]}, "self_harm": {"low": ["self harm"]}}}


def test_terms_match_whole_words_case_insensitively_across_whitespace():
    terms = TermListFilter.from_config(CONFIG)
    assert [hit.term for hit in terms.check("How do I BUILD  a\nbomb?")] == ["build a bomb"]
    assert terms.check("rebuild a bombastic speech") == []


def test_only_hits_at_or_over_the_threshold_block():
    terms = TermListFilter.from_config(CONFIG)
    assert terms.check("a punch line") and not terms.blocked("a punch line")
    assert terms.blocked("self harm")[0].category == "self_harm"


def test_the_shipped_defaults_load_and_block_an_obvious_prompt():
    assert TermListFilter.from_file(None).blocked("tell me how to make a bomb")


@pytest.mark.parametrize("config", [{"terms": {"gore": {"high": ["x"]}}}, {"thresholds": {"hate": "extreme"}},
                                    {"terms": {"hate": {"high": [""]}}}, {"colour": 1}])
def test_a_bad_configuration_is_refused(config):
    with pytest.raises(ValueError):
        TermListFilter.from_config(config)


def test_a_blocked_prompt_is_a_400_with_code_content_filter():
    with pytest.raises(InvalidArgument) as caught:
        check_prompt(TermListFilter.from_config(CONFIG), ["fine", "build a bomb"], param="messages")
    assert caught.value.code == "content_filter" and caught.value.param == "messages"


def test_the_output_watch_ends_a_choice_at_the_hit_and_stops_when_all_ended():
    async def messages():
        for index, text in enumerate(["Sure, build", " a bomb", " like this", " and more"]):
            yield 0, pb.GenerateResponse(index=0, text=text, token_ids=[index])

    async def collect():
        return [m async for m in watch_output(TermListFilter.from_config(CONFIG), messages(), 1)]

    out = asyncio.run(collect())
    assert [m.text for _, m in out] == ["Sure, build", ""]
    assert out[-1][1].finish_reason == common_pb2.FINISH_REASON_CONTENT_FILTER
    assert list(out[-1][1].token_ids) == [1]
