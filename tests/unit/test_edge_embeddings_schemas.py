"""Embeddings request bodies: OpenAI's four shapes of `input`, and what reaches the embeddings service."""

from __future__ import annotations

import pytest

from edge.mesh.embeddings import embed_request
from edge.openai.embeddings_schemas import (AzureEmbeddingsRequest, OpenAIEmbeddingsRequest,
                                     parse_inputs)
from edge.openai.parsing import validate
from ingot.common.errors import InvalidArgument
from ingot.embeddings.v1 import embeddings_service_pb2 as pb


@pytest.mark.parametrize(("value", "expected"), [
    ("hello", ["hello"]),
    (["a", "b"], ["a", "b"]),
    ([1, 2, 3], [[1, 2, 3]]),
    ([[1, 2], [3]], [[1, 2], [3]]),
])
def test_every_openai_input_shape_becomes_a_list_of_inputs(value, expected):
    assert parse_inputs(value) == expected


@pytest.mark.parametrize(("value", "param"), [
    (None, "input"),
    ("", "input"),
    ([], "input"),
    (5, "input"),
    ({"text": "x"}, "input"),
    (["a", ""], "input[1]"),
    (["a", ["b"]], "input[1]"),
    ([[1], []], "input[1]"),
    ([[1], [2, -3]], "input[1][1]"),
    ([1, True], "input[1]"),
    ([[1], "a"], "input[1]"),
    ([1.5], "input[0]"),
])
def test_bad_inputs_name_the_element_at_fault(value, param):
    with pytest.raises(InvalidArgument) as caught:
        parse_inputs(value)
    assert caught.value.param == param


def test_openai_request_becomes_an_embed_request():
    request = validate(OpenAIEmbeddingsRequest, {"model": "m", "input": ["a", "b"], "dimensions": 3,
                                                 "instruction": "Represent:", "truncate": False, "user": "u"})
    proto = embed_request("m", request)
    assert [i.text for i in proto.inputs] == ["a", "b"]
    assert (proto.dimensions, proto.instruction, proto.fail_on_overflow) == (3, "Represent:", True)
    assert proto.input_type == pb.INPUT_TYPE_UNSPECIFIED


def test_unset_options_stay_unset():
    proto = embed_request("m", validate(OpenAIEmbeddingsRequest, {"model": "m", "input": [[5, 6]],
                                                                  "dimensions": None}))
    assert not proto.HasField("dimensions") and not proto.fail_on_overflow and proto.instruction == ""
    assert list(proto.inputs[0].tokens.ids) == [5, 6]


def test_azure_request_carries_the_input_type():
    request = validate(AzureEmbeddingsRequest, {"input": ["q"], "input_type": "query", "encoding_format": "ubinary"})
    assert embed_request("m", request, input_type=request.input_type).input_type == pb.INPUT_TYPE_QUERY


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m", "input": "x", "encoding_format": "binary"}, "encoding_format"),
    ({"model": "m", "input": "x", "dimensions": "3"}, "dimensions"),
    ({"model": "m", "input": "x", "truncate": "no"}, "truncate"),
    ({"model": "m", "input": "x", "input_type": "query"}, "input_type"),
    ({"model": "", "input": "x"}, "model"),
])
def test_openai_body_errors_name_the_parameter(body, param):
    with pytest.raises(InvalidArgument) as caught:
        validate(OpenAIEmbeddingsRequest, body)
    assert caught.value.param == param
