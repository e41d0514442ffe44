"""The inference service over gRPC with the real SmolLM2 model (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from ingot.common.errors import error_from_rpc
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb
from tests.conftest import SMOLLM2_ID
from tests.integration.inference_harness import request

async def test_generate_streams_tokens_and_ends_with_finish_reason_and_usage(inference, prompt_ids):
    messages = [m async for m in inference.Generate(request(prompt_ids, max_tokens=12, temperature=0))]
    final = messages[-1]
    assert final.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert final.usage.prompt_tokens == len(prompt_ids)
    assert final.usage.completion_tokens == 12 == sum(len(m.token_ids) for m in messages)
    assert "".join(m.text for m in messages).strip()
    assert all(m.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for m in messages[:-1])


async def test_a_second_request_streams_while_a_long_one_is_still_running(inference, prompt_ids):
    long_done = asyncio.Event()
    first_short_token_at: list[float] = []

    async def long_call():
        async for _ in inference.Generate(request(prompt_ids, max_tokens=150, temperature=0.8, seed=1)):
            pass
        long_done.set()

    async def short_call():
        await asyncio.sleep(0.3)
        async for message in inference.Generate(request(prompt_ids, max_tokens=3, temperature=0)):
            if message.token_ids and not first_short_token_at:
                first_short_token_at.append(time.monotonic())
                assert not long_done.is_set(), "the short request waited for the long one"

    await asyncio.gather(long_call(), short_call())
    assert first_short_token_at


async def test_cancelled_call_frees_its_sequence_at_once(inference, prompt_ids):
    call = inference.Generate(request(prompt_ids, max_tokens=1500, temperature=0.8))
    async for message in call:
        if message.token_ids:
            break
    loaded = (await inference.ListLoadedModels(pb.ListLoadedModelsRequest())).models[0]
    assert loaded.active_sequences == 1
    call.cancel()
    for _ in range(100):
        loaded = (await inference.ListLoadedModels(pb.ListLoadedModelsRequest())).models[0]
        if loaded.active_sequences == 0:
            break
        await asyncio.sleep(0.02)
    assert loaded.active_sequences == 0
    assert loaded.generated_tokens < 100


async def test_max_tokens_beyond_the_context_is_invalid_argument_naming_it(inference, prompt_ids):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in inference.Generate(request(prompt_ids, max_tokens=9000)):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(caught.value).param == "max_tokens"


async def test_unknown_model_is_not_found(inference, prompt_ids):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in inference.Generate(pb.GenerateRequest(model="nope", prompt_token_ids=prompt_ids)):
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_from_rpc(caught.value).param == "model"


async def test_token_ids_outside_the_vocabulary_are_rejected(inference):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in inference.Generate(request([1, 2, 10**6], max_tokens=2)):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(caught.value).param == "prompt"


async def test_beyond_active_and_waiting_slots_is_resource_exhausted(inference, prompt_ids):
    # Greedy decoding of this prompt runs past 400 tokens without an end-of-sequence, so no slot frees up.
    calls = [inference.Generate(request(prompt_ids, max_tokens=400, temperature=0)) for _ in range(3)]
    for call in calls:
        # Initial metadata arrives once the service has admitted the sequence (2 active, 1 waiting).
        await call.initial_metadata()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference.Generate(request(prompt_ids, max_tokens=5)).read()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for call in calls:
        call.cancel()


async def test_load_list_and_unload(inference):
    loaded = await inference.LoadModel(pb.LoadModelRequest(model="smollm2-135m-instruct"))
    assert loaded.model.id == SMOLLM2_ID
    assert [m.id for m in (await inference.ListLoadedModels(pb.ListLoadedModelsRequest())).models] == [SMOLLM2_ID]
    await inference.UnloadModel(pb.UnloadModelRequest(model=SMOLLM2_ID))
    assert not (await inference.ListLoadedModels(pb.ListLoadedModelsRequest())).models


async def test_prompt_logprobs_score_every_prompt_token_after_the_first(inference, prompt_ids):
    messages = [m async for m in inference.Generate(pb.GenerateRequest(
        model="smollm2-135m-instruct", prompt_token_ids=prompt_ids, prompt_logprobs=True,
        sampling=pb.SamplingParams(max_tokens=3, temperature=0, logprobs=True, top_logprobs=2)))]
    scored = messages[0].prompt_logprobs
    assert [entry.token_id for entry in scored] == prompt_ids[1:]
    assert all(entry.logprob <= 0 and len(entry.top_logprobs) == 2 for entry in scored)
    # The prompt is the chat template's own text, which the model predicts well at its fixed markers.
    assert max(entry.logprob for entry in scored) > -0.5
    assert sum(len(m.token_ids) for m in messages) == 3


async def test_n_choices_with_a_seed_differ_from_each_other_and_repeat(inference, prompt_ids):
    async def texts():
        out = {0: "", 1: "", 2: ""}
        async for m in inference.Generate(pb.GenerateRequest(
                model="smollm2-135m-instruct", prompt_token_ids=prompt_ids, n=3,
                sampling=pb.SamplingParams(max_tokens=10, temperature=1.0, seed=11))):
            out[m.index] += m.text
        return out

    first = await texts()
    assert first == await texts()
    assert len(set(first.values())) > 1


JSON_SCHEMA = ('{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},'
               ' "required": ["name", "age"], "additionalProperties": false}')


# Sampled at temperature 1, SmolLM2 sometimes fills a JSON answer with whitespace until max_tokens (the
# grammar allows it); the seed is one whose two answers end, with the GGUF-imported default model.
@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 1}, {"temperature": 0, "logprobs": True}])
async def test_a_json_schema_constraint_makes_every_answer_valid(inference, prompt_ids, sampling):
    import json

    messages = [m async for m in inference.Generate(pb.GenerateRequest(
        model="smollm2-135m-instruct", prompt_token_ids=prompt_ids, n=2,
        constraint=pb.Constraint(json_schema=JSON_SCHEMA), sampling=pb.SamplingParams(max_tokens=60, **sampling)))]
    for index in (0, 1):
        text = "".join(m.text for m in messages if m.index == index)
        value = json.loads(text)
        assert set(value) == {"name", "age"} and isinstance(value["age"], int)
        final = [m for m in messages if m.index == index and m.finish_reason][0]
        assert final.finish_reason == common_pb2.FINISH_REASON_STOP
        assert final.usage.completion_tokens == sum(len(m.token_ids) for m in messages if m.index == index)


async def test_a_regex_constraint_allows_only_its_language(inference, prompt_ids):
    text = "".join([m.text async for m in inference.Generate(pb.GenerateRequest(
        model="smollm2-135m-instruct", prompt_token_ids=prompt_ids, constraint=pb.Constraint(regex="(yes|no)"),
        sampling=pb.SamplingParams(max_tokens=10, temperature=1.0)))])
    assert text in ("yes", "no")


async def test_a_constraint_cut_by_max_tokens_ends_with_length(inference, prompt_ids):
    messages = [m async for m in inference.Generate(pb.GenerateRequest(
        model="smollm2-135m-instruct", prompt_token_ids=prompt_ids, constraint=pb.Constraint(json_schema=JSON_SCHEMA),
        sampling=pb.SamplingParams(max_tokens=4, temperature=0)))]
    assert messages[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert messages[-1].usage.completion_tokens == 4


async def test_a_forced_run_longer_than_what_is_left_of_the_budget_ends_with_length(inference, prompt_ids):
    # The grammar forces the whole sentence at once (fast-forward): far more tokens than max_tokens allows.
    forced = '{"const": "' + "every word of this sentence is forced by the grammar, " * 4 + '"}'
    messages = [m async for m in inference.Generate(pb.GenerateRequest(
        model="smollm2-135m-instruct", prompt_token_ids=prompt_ids, constraint=pb.Constraint(json_schema=forced),
        sampling=pb.SamplingParams(max_tokens=3, temperature=0)))]
    assert messages[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert messages[-1].usage.completion_tokens == 3


async def test_a_grammar_that_cannot_compile_is_invalid_argument_on_constraint(inference, prompt_ids):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in inference.Generate(pb.GenerateRequest(
                model="smollm2-135m-instruct", prompt_token_ids=prompt_ids,
                constraint=pb.Constraint(lark_grammar="start: undefined_rule"), sampling=pb.SamplingParams(max_tokens=4))):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(caught.value).param == "constraint"


WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                       "unit": {"enum": ["celsius", "fahrenheit"]}},
                      "required": ["city", "unit"], "additionalProperties": False}
ADD_PARAMETERS = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                  "required": ["a", "b"], "additionalProperties": False}


@pytest.fixture(scope="module")
def tools_prompt_ids(smollm2_dir):
    import json

    from tokenizers import Tokenizer

    from services.tokenizer.tools import tools_section

    section = tools_section([{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS}},
                             {"type": "function", "function": {"name": "add", "parameters": ADD_PARAMETERS}}])
    text = (f"<|im_start|>system\n{section}<|im_end|>\n<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n"
            "<|im_start|>assistant\n")
    assert json.dumps(WEATHER_PARAMETERS) in text.replace('": ', '": ')
    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json")).encode(text, add_special_tokens=False).ids


def tools_request(prompt_ids, choice, *, parallel=False, function_name="", n=1, max_tokens=80, **sampling):
    import json

    functions = [pb.FunctionDefinition(name="get_weather", parameters_json=json.dumps(WEATHER_PARAMETERS)),
                 pb.FunctionDefinition(name="add", parameters_json=json.dumps(ADD_PARAMETERS))]
    return pb.GenerateRequest(
        model="smollm2-135m-instruct", prompt_token_ids=prompt_ids, n=n,
        tools=pb.Tools(functions=functions, choice=choice, parallel_calls=parallel, function_name=function_name),
        sampling=pb.SamplingParams(max_tokens=max_tokens, **sampling))


def assembled(messages, index=0):
    text, calls = "", {}
    for m in messages:
        if m.index != index:
            continue
        text += m.text
        for delta in m.tool_calls:
            call = calls.setdefault(delta.index, ["", "", ""])
            call[0] += delta.id
            call[1] += delta.name
            call[2] += delta.arguments
    return text, [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 5}])
async def test_required_tools_make_every_choice_a_valid_call(inference, tools_prompt_ids, sampling):
    import json

    messages = [m async for m in inference.Generate(
        tools_request(tools_prompt_ids, pb.TOOL_CHOICE_REQUIRED, n=2, **sampling))]
    for index in (0, 1):
        text, calls = assembled(messages, index)
        assert text == ""
        assert len(calls) == 1
        call_id, name, arguments = calls[0]
        assert call_id.startswith("call_") and name in ("get_weather", "add")
        value = json.loads(arguments)
        assert set(value) == ({"city", "unit"} if name == "get_weather" else {"a", "b"})
        final = [m for m in messages if m.index == index and m.finish_reason][0]
        assert final.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS


async def test_a_named_function_is_the_one_called(inference, tools_prompt_ids):
    import json

    messages = [m async for m in inference.Generate(
        tools_request(tools_prompt_ids, pb.TOOL_CHOICE_FUNCTION, function_name="add", temperature=0))]
    text, [(_, name, arguments)] = assembled(messages)
    assert (text, name) == ("", "add")
    assert set(json.loads(arguments)) == {"a", "b"}


async def test_tool_choice_none_answers_in_prose_without_markers(inference, tools_prompt_ids):
    messages = [m async for m in inference.Generate(
        tools_request(tools_prompt_ids, pb.TOOL_CHOICE_NONE, max_tokens=40, temperature=0))]
    text, calls = assembled(messages)
    assert text.strip() and calls == []
    assert "<tool_call>" not in text
    assert messages[-1].finish_reason in (common_pb2.FINISH_REASON_STOP, common_pb2.FINISH_REASON_LENGTH)


async def test_a_call_cut_by_max_tokens_ends_with_length_and_keeps_its_name(inference, tools_prompt_ids):
    messages = [m async for m in inference.Generate(
        tools_request(tools_prompt_ids, pb.TOOL_CHOICE_FUNCTION, function_name="get_weather", max_tokens=24,
                      temperature=0))]
    _, calls = assembled(messages)
    assert messages[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert calls[0][1] == "get_weather"
    assert messages[-1].usage.completion_tokens == 24


async def test_tools_with_a_json_schema_answer_either_call_or_answer_in_that_schema(inference, tools_prompt_ids):
    import json

    request = tools_request(tools_prompt_ids, pb.TOOL_CHOICE_AUTO, max_tokens=120, temperature=0)
    request.constraint.json_schema = JSON_SCHEMA
    messages = [m async for m in inference.Generate(request)]
    text, calls = assembled(messages)
    if calls:
        assert text == "" and messages[-1].finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    else:
        assert set(json.loads(text)) == {"name", "age"}
        assert messages[-1].finish_reason == common_pb2.FINISH_REASON_STOP
