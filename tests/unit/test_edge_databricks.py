"""The Databricks surface's pure parts: the error codes each status gets, the SDK's own fields, and which task
a body asks for."""

from __future__ import annotations

import pytest

from edge.databricks.adapter import Endpoint, Failure
from edge.databricks.errors import databricks_body, error_code
from edge.databricks.invocations import take_sdk_fields, task_field
from ingot.common.errors import InvalidArgument

CHAT = Endpoint("chat", "llm/v1/chat", "Chat:1", 0)
EMBEDDINGS = Endpoint("emb", "llm/v1/embeddings", "Emb:1", 0)

# Every code mlflow maps back to this same status (mlflow/exceptions.py ERROR_CODE_TO_HTTP_STATUS); a code it
# does not know would reach an mlflow user as a 500.
MLFLOW_STATUS = {"BAD_REQUEST": 400, "INVALID_PARAMETER_VALUE": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
                 "RESOURCE_DOES_NOT_EXIST": 404, "RESOURCE_CONFLICT": 409, "REQUEST_LIMIT_EXCEEDED": 429,
                 "CANCELLED": 499, "INTERNAL_ERROR": 500, "NOT_IMPLEMENTED": 501, "TEMPORARILY_UNAVAILABLE": 503,
                 "DEADLINE_EXCEEDED": 504}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 429, 499, 500, 501, 503, 504])
def test_each_status_gets_a_code_that_mlflow_maps_back_to_it(status):
    assert MLFLOW_STATUS[error_code(Failure(status, "m", "t", param="x" if status == 400 else None))] == status


@pytest.mark.parametrize("status, code", [(405, "BAD_REQUEST"), (413, "BAD_REQUEST"), (422, "BAD_REQUEST"),
                                          (502, "INTERNAL_ERROR")])
def test_other_statuses_fall_back_to_a_known_code(status, code):
    assert error_code(Failure(status, "m", "t")) == code


def test_a_400_names_invalid_parameter_value_only_with_a_parameter():
    assert databricks_body(Failure(400, "Invalid type for 'n'.", "invalid_request_error", param="n")) == {
        "error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid type for 'n'."}
    assert error_code(Failure(400, "not JSON", "invalid_request_error")) == "BAD_REQUEST"


def test_extra_params_become_typed_parameters_and_sdk_fields_leave_the_body():
    body, extra = take_sdk_fields({"messages": [], "client_request_id": "r", "usage_context": {"k": "v"},
                                   "extra_params": {"top_k": "5", "temperature": "0.5", "logprobs": "true",
                                                    "stop": "[\"a\", \"b\"]", "user": "alice", "seed": 7}})
    assert body == {"messages": [], "top_k": 5, "temperature": 0.5, "logprobs": True, "stop": ["a", "b"],
                    "user": "alice", "seed": 7}
    assert extra == {"top_k", "temperature", "logprobs", "stop", "user", "seed"}


@pytest.mark.parametrize("body, param", [
    ({"extra_params": {"n": "2"}, "n": 1}, "extra_params.n"),
    ({"extra_params": {"model": "x"}}, "extra_params.model"),
    ({"extra_params": ["top_k"]}, "extra_params"),
    ({"extra_params": {"top_k": {"nested": 1}}}, "extra_params.top_k"),
    ({"usage_context": "team"}, "usage_context"),
    ({"client_request_id": 42}, "client_request_id"),
    ({"client_request_id": "x" * 257}, "client_request_id"),
])
def test_malformed_sdk_fields_are_400s_naming_them(body, param):
    with pytest.raises(InvalidArgument) as caught:
        take_sdk_fields(body)
    assert caught.value.param == param


@pytest.mark.parametrize("body, endpoint, field", [
    ({"messages": []}, CHAT, "messages"), ({"prompt": "x"}, CHAT, "prompt"), ({"input": "x"}, EMBEDDINGS, "input"),
])
def test_the_body_names_the_task(body, endpoint, field):
    assert task_field(body, endpoint) == field


@pytest.mark.parametrize("body, endpoint, param", [
    ({}, CHAT, "messages"),
    ({"messages": [], "input": "x"}, CHAT, "input"),
    ({"input": "x"}, CHAT, "input"),
    ({"prompt": "x"}, EMBEDDINGS, "prompt"),
    ({"dataframe_records": []}, CHAT, "dataframe_records"),
])
def test_a_body_without_one_task_the_endpoint_serves_is_a_400(body, endpoint, param):
    with pytest.raises(InvalidArgument) as caught:
        task_field(body, endpoint)
    assert caught.value.param == param
