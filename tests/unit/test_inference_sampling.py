import pytest

from ingot.common.errors import InvalidArgument
from ingot.inference.v1 import inference_service_pb2 as pb
from services.inference.sampling import budget, search_options


def test_budget_sizes_the_kv_cache_to_prompt_plus_max_tokens():
    assert budget(30, 10, context_length=8192, max_output_tokens=2048).max_length == 40


def test_budget_without_max_tokens_uses_the_models_output_cap_within_the_context():
    assert budget(30, None, context_length=8192, max_output_tokens=2048).max_tokens == 2048
    assert budget(8000, None, context_length=8192, max_output_tokens=2048).max_tokens == 192


def test_budget_beyond_the_context_names_max_tokens():
    with pytest.raises(InvalidArgument) as caught:
        budget(100, 9000, context_length=8192, max_output_tokens=2048)
    assert caught.value.param == "max_tokens"
    assert "8192" in caught.value.message and "9100" in caught.value.message


def test_a_prompt_that_fills_the_context_names_messages():
    with pytest.raises(InvalidArgument) as caught:
        budget(8192, None, context_length=8192, max_output_tokens=2048)
    assert caught.value.param == "messages"
    assert caught.value.code == "context_length_exceeded"


def test_temperature_zero_is_greedy_and_unset_fields_keep_model_defaults():
    assert search_options(pb.SamplingParams(temperature=0), 50) == {"max_length": 50, "do_sample": False}
    assert search_options(pb.SamplingParams(), 50) == {"max_length": 50}


def test_sampling_options_pass_through():
    options = search_options(pb.SamplingParams(temperature=0.7, top_p=0.9, top_k=40, seed=2**40 + 7), 50)
    assert options["do_sample"] is True
    assert options["temperature"] == pytest.approx(0.7)
    assert options["top_k"] == 40
    assert 0 <= options["random_seed"] < 2**31


@pytest.mark.parametrize(("params", "param"), [
    (pb.SamplingParams(temperature=2.5), "temperature"),
    (pb.SamplingParams(top_p=0.0), "top_p"),
    (pb.SamplingParams(top_p=1.5), "top_p"),
    (pb.SamplingParams(top_k=0), "top_k"),
    (pb.SamplingParams(repetition_penalty=0.0), "repetition_penalty"),
])
def test_out_of_range_sampling_names_the_parameter(params, param):
    with pytest.raises(InvalidArgument) as caught:
        search_options(params, 50)
    assert caught.value.param == param
