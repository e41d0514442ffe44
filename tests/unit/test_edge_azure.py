"""The Azure sub-application's rules: error shapes, extra-parameters, deployments."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from edge.azure.errors import Unprocessable, azure_body, unsupported
from edge.azure.params import deployment, extra_parameters
from edge.shared.errors import Failure
from ingot.common.errors import InvalidArgument, NotFound

SPEC = {"input", "model"}
EXTRAS = {"truncate"}


def request(**headers):
    return make_mocked_request("POST", "/embeddings?api-version=2024-05-01-preview", headers=headers)


def test_a_422_has_azures_shape_with_location_and_value():
    error = Unprocessable("Model 'm' has 384 dimensions only.", param="dimensions", value=64)
    assert azure_body(Failure.from_error(error)) == {
        "status": 422, "code": "parameter_not_supported", "message": "One of the parameters contain invalid values.",
        "detail": {"loc": ["body", "dimensions"], "input": 64, "msg": "Model 'm' has 384 dimensions only."},
    }


def test_nested_parameters_become_location_parts():
    assert Unprocessable("x", param="input[2].image", value=None).detail["loc"] == ["body", "input", 2, "image"]


def test_other_errors_keep_openais_shape_and_add_the_status():
    body = azure_body(Failure.from_error(NotFound("No such model.", param="model", code="model_not_found")))
    assert body == {"error": {"message": "No such model.", "type": "invalid_request_error", "param": "model",
                              "code": "model_not_found", "status": 404}}


def test_only_parameter_not_supported_refusals_become_422s():
    plain = InvalidArgument("bad", param="input")
    assert unsupported(plain, {}) is plain
    converted = unsupported(InvalidArgument("no", param="dimensions", code="parameter_not_supported"),
                            {"dimensions": 7})
    assert isinstance(converted, Unprocessable) and converted.detail["input"] == 7


def test_extra_parameters_default_to_a_422_naming_the_first():
    with pytest.raises(Unprocessable) as caught:
        extra_parameters(request(), {"input": "x", "truncate": True}, spec=SPEC, model_extras=EXTRAS)
    assert caught.value.param == "truncate" and caught.value.http_status == 422
    assert caught.value.detail["loc"] == ["body", "truncate"] and caught.value.code == "extra_parameters_not_allowed"


def test_drop_removes_extras_and_pass_through_keeps_what_the_model_understands():
    body = {"input": "x", "truncate": True}
    assert extra_parameters(request(**{"extra-parameters": "drop"}), {**body, "foo": 1}, spec=SPEC,
                            model_extras=EXTRAS) == {"input": "x"}
    assert extra_parameters(request(**{"extra-parameters": "pass-through"}), body, spec=SPEC,
                            model_extras=EXTRAS) == body
    with pytest.raises(Unprocessable) as caught:
        extra_parameters(request(**{"extra-parameters": "pass-through"}), {**body, "foo": 1}, spec=SPEC,
                         model_extras=EXTRAS)
    assert caught.value.detail == {"loc": ["body", "foo"], "input": 1,
                                   "msg": "The model does not accept the parameter 'foo'."}


def test_an_unknown_extra_parameters_mode_is_a_400():
    with pytest.raises(InvalidArgument) as caught:
        extra_parameters(request(**{"extra-parameters": "ignore-all"}), {"input": "x"}, spec=SPEC, model_extras=EXTRAS)
    assert caught.value.param == "extra-parameters"


def test_the_deployment_is_the_model_field_or_the_header():
    assert deployment(request(), "m") == "m"
    assert deployment(request(**{"azureml-model-deployment": "d"}), None) == "d"
    with pytest.raises(InvalidArgument):
        deployment(request(), None)
