"""The public gRPC API's requests become the REST bodies a REST client would send, and REST answers become
its typed messages; HTTP error answers become the IngotError (and so the gRPC status) they stand for."""

from __future__ import annotations

import json

import grpc
import pytest

from edge.grpcapi import messages
from edge.grpcapi.pipeline import raise_for_event, headers_from, loopback_url
from edge.openai.schemas import ChatCompletionRequest, CompletionRequest
from ingot.api.v1 import ingot_service_pb2 as pb
from ingot.common.errors import InvalidArgument, error_from_http
from ingot.common.telemetry import REQUEST_ID

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_a_full_chat_request_becomes_the_rest_body_that_the_rest_schema_accepts():
    request = pb.ChatRequest(
        model="m", n=2, logprobs=True, top_logprobs=3, parallel_tool_calls=False, user="u",
        messages=[pb.Message(role=pb.ROLE_SYSTEM, content="be brief"), pb.Message(role=pb.ROLE_USER, content="hi"),
                  pb.Message(role=pb.ROLE_ASSISTANT, tool_calls=[pb.ToolCall(
                      id="c1", function=pb.FunctionCall(name="f", arguments="{}"))]),
                  pb.Message(role=pb.ROLE_TOOL, content="42", tool_call_id="c1")],
        sampling=pb.Sampling(max_tokens=9, temperature=0.7, top_p=0.9, top_k=5, seed=-3, stop=["\n"],
                             logit_bias={7: -100.0}),
        tools=[pb.Tool(function=pb.FunctionDefinition(name="f", description="d", parameters_json=json.dumps(SCHEMA),
                                                      strict=True))],
        tool_choice=pb.ToolChoice(function_name="f"),
        response_format=pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_SCHEMA, json_schema=pb.JsonSchema(
            name="s", schema_json=json.dumps(SCHEMA))))
    body = messages.chat_body(request)
    assert body["messages"][2] == {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert body["messages"][3] == {"role": "tool", "content": "42", "tool_call_id": "c1"}
    assert body["temperature"] == 0.7 and body["seed"] == -3 and body["logit_bias"] == {"7": -100.0}
    assert body["tools"][0]["function"]["parameters"] == SCHEMA
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["response_format"]["json_schema"] == {"name": "s", "schema": SCHEMA}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    parsed = ChatCompletionRequest.model_validate(body)
    assert parsed.choices == 2 and parsed.top_logprobs == 3 and parsed.parallel_tool_calls is False


def test_unset_fields_stay_out_of_the_body_so_deployment_defaults_apply():
    body = messages.chat_body(pb.ChatRequest(model="m", messages=[pb.Message(role=pb.ROLE_USER, content="hi")]))
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                    "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(("request_", "param"), [
    (pb.ChatRequest(model="m", messages=[pb.Message(content="x")]), "messages[0].role"),
    (pb.ChatRequest(model="m", messages=[pb.Message(role=pb.ROLE_USER, content="x")],
                    tools=[pb.Tool(function=pb.FunctionDefinition(name="f", parameters_json="{nope"))]),
     "tools[0].function.parameters_json"),
    (pb.ChatRequest(model="m", messages=[pb.Message(role=pb.ROLE_USER, content="x")],
                    response_format=pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_SCHEMA,
                                                      json_schema=pb.JsonSchema(name="s", schema_json="["))),
     "response_format.json_schema.schema_json"),
])
def test_a_request_the_rest_body_cannot_carry_is_invalid_and_names_the_field(request_, param):
    with pytest.raises(InvalidArgument) as caught:
        messages.chat_body(request_)
    assert caught.value.param == param


def test_a_completion_request_becomes_a_valid_rest_body():
    body = messages.complete_body(pb.CompleteRequest(model="m", prompts=["a", "b"], logprobs=0, echo=True,
                                                     sampling=pb.Sampling(max_tokens=3)))
    parsed = CompletionRequest.model_validate(body)
    assert parsed.prompt == ["a", "b"] and parsed.logprobs == 0 and parsed.echo


def test_a_chat_chunk_becomes_one_delta_per_choice_and_the_usage_its_own_message():
    chunk = {"id": "c", "model": "m", "created": 5, "choices": [
        {"index": 1, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a"}}]},
         "logprobs": {"content": [{"token": "x", "logprob": -0.5, "bytes": [120],
                                   "top_logprobs": [{"token": "y", "logprob": -1.0, "bytes": [121]}]}]},
         "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    delta, usage = messages.chat_responses(chunk)
    assert (delta.id, delta.model, delta.created) == ("c", "m", 5)
    assert delta.delta.index == 1 and delta.delta.role == pb.ROLE_ASSISTANT and delta.delta.text == ""
    assert delta.delta.tool_calls[0] == pb.ToolCallDelta(index=0, id="call_1", name="f", arguments="{\"a")
    assert delta.delta.logprobs[0].bytes == b"x" and delta.delta.logprobs[0].top_logprobs[0].token == "y"
    assert delta.delta.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert usage.usage == pb.Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)


def test_completion_logprobs_become_one_entry_per_token_with_the_echoed_first_unscored():
    chunk = {"id": "c", "model": "m", "created": 1, "choices": [{"index": 0, "text": "ab", "finish_reason": None,
             "logprobs": {"tokens": ["a", "b"], "token_logprobs": [None, -0.1], "top_logprobs": [None, {"b": -0.1}],
                          "text_offset": [0, 1]}}]}
    (response,) = messages.complete_responses(chunk)
    first, second = response.delta.logprobs
    assert not first.HasField("logprob") and second.logprob == pytest.approx(-0.1)
    assert dict(second.top_logprobs) == {"b": pytest.approx(-0.1)} and second.text_offset == 1


@pytest.mark.parametrize(("status", "code"), [
    (400, grpc.StatusCode.INVALID_ARGUMENT), (401, grpc.StatusCode.UNAUTHENTICATED),
    (403, grpc.StatusCode.PERMISSION_DENIED), (404, grpc.StatusCode.NOT_FOUND), (409, grpc.StatusCode.ALREADY_EXISTS),
    (413, grpc.StatusCode.INVALID_ARGUMENT), (422, grpc.StatusCode.INVALID_ARGUMENT),
    (429, grpc.StatusCode.RESOURCE_EXHAUSTED), (500, grpc.StatusCode.INTERNAL), (502, grpc.StatusCode.INTERNAL),
    (503, grpc.StatusCode.UNAVAILABLE), (504, grpc.StatusCode.DEADLINE_EXCEEDED),
])
def test_an_http_error_status_maps_back_to_the_grpc_code_of_the_same_error(status, code):
    error = error_from_http(status, "why", param="p", code="c")
    assert error.grpc_code == code and (error.message, error.param, error.code) == ("why", "p", "c")


def test_only_the_credentials_and_the_calls_own_request_id_are_forwarded():
    token = REQUEST_ID.set("req-1")
    try:
        headers = headers_from([("authorization", "Bearer k"), ("api-key", "k2"), ("x-request-id", "spoofed"),
                                ("host", "evil"), ("content-length", "9"), ("trace-bin", b"\x00")])
    finally:
        REQUEST_ID.reset(token)
    assert headers == {"User-Agent": "ingot-grpc-api/1", "authorization": "Bearer k", "api-key": "k2",
                       "x-request-id": "req-1"}


def test_the_loopback_address_of_a_wildcard_bind_is_loopback():
    assert loopback_url("0.0.0.0", 80, False) == "http://127.0.0.1:80"
    assert loopback_url("::1", 443, True) == "https://[::1]:443"


@pytest.mark.parametrize(("kind", "code"), [
    ("invalid_request_error", grpc.StatusCode.INVALID_ARGUMENT), ("rate_limit_error", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ("service_unavailable", grpc.StatusCode.UNAVAILABLE), ("timeout", grpc.StatusCode.DEADLINE_EXCEEDED),
    ("server_error", grpc.StatusCode.INTERNAL), ("something new", grpc.StatusCode.INTERNAL),
])
def test_an_error_event_after_the_stream_opened_maps_by_its_type(kind, code):
    with pytest.raises(Exception) as caught:
        raise_for_event({"error": {"message": "late", "type": kind, "param": None, "code": "c"}})
    assert caught.value.grpc_code == code and caught.value.code == "c"


def test_an_ordinary_event_is_no_error():
    raise_for_event({"id": "x", "choices": []})
