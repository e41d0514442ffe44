"""The public gRPC API (ingot.api.v1) from Python's grpcio against `ingot serve --grpc-port`, with API keys on:
chat streams, a forced tool call and a json_schema answer that validate against their schemas, embeddings,
the error statuses with their ErrorInfo, a cancelled stream that stops its generation, and gRPC answers
identical to REST's for the same seeded request."""

from __future__ import annotations

import json
import time

import grpc
import httpx
import jsonschema
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ingot.api.v1 import ingot_service_pb2 as pb
from ingot.api.v1 import ingot_service_pb2_grpc as pb_grpc
from ingot.inference.v1 import inference_service_pb2 as inference_pb
from ingot.inference.v1 import inference_service_pb2_grpc as inference_grpc
from tests.conftest import MINILM_ALIAS, SMOLLM2_ALIAS, SMOLLM2_ID
from tests.e2e.grpcapi import API_KEY, ORDER, WEATHER, error_info, start_grpc_mesh

pytestmark = pytest.mark.e2e

KEY = (("authorization", f"Bearer {API_KEY}"),)


@pytest.fixture(scope="module")
def api(ingot_home, smollm2_dir, minilm_dir, tmp_path_factory):
    spans = tmp_path_factory.mktemp("grpc-trace") / "spans.jsonl"
    running = start_grpc_mesh(ingot_home, env={"INGOT_TRACE_FILE": str(spans)})
    running.spans = spans
    yield running
    running.mesh.stop()


@pytest.fixture()
def stub(api):
    channel = grpc.insecure_channel(api.address)
    yield pb_grpc.IngotServiceStub(channel)
    channel.close()


def user(text: str) -> list[pb.Message]:
    return [pb.Message(role=pb.ROLE_USER, content=text)]


def assemble(responses) -> tuple[str, dict[int, list[str]], int, pb.Usage | None]:
    """Choice 0's text, its calls (index → [id, name, arguments]), finish reason, and the usage."""
    text, calls, finish, usage = "", {}, pb.FINISH_REASON_UNSPECIFIED, None
    for response in responses:
        if response.HasField("usage"):
            usage = response.usage
            continue
        delta = response.delta
        text += delta.text
        for piece in delta.tool_calls:
            call = calls.setdefault(piece.index, ["", "", ""])
            call[0] += piece.id
            call[1] += piece.name
            call[2] += piece.arguments
        if delta.finish_reason:
            finish = delta.finish_reason
    return text, calls, finish, usage


def test_a_chat_answer_streams_as_typed_deltas_then_usage(stub):
    responses = list(stub.Chat(pb.ChatRequest(model=SMOLLM2_ALIAS, messages=user("Say hello."),
                                              sampling=pb.Sampling(max_tokens=12, temperature=0)),
                               metadata=KEY, timeout=120))
    assert responses[0].delta.role == pb.ROLE_ASSISTANT
    assert len({r.id for r in responses}) == 1 and responses[0].model == SMOLLM2_ID
    text, calls, finish, usage = assemble(responses)
    assert text.strip() and not calls
    assert finish in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_LENGTH)
    assert responses[-1].HasField("usage") and 1 <= usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_required_tool_call_has_arguments_that_validate_against_the_schema(stub):
    tool = pb.Tool(function=pb.FunctionDefinition(name="get_weather", description="Get the weather in a city",
                                                  parameters_json=json.dumps(WEATHER), strict=True))
    responses = stub.Chat(pb.ChatRequest(
        model=SMOLLM2_ALIAS, messages=user("What is the weather in Paris?"), tools=[tool],
        tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_REQUIRED),
        sampling=pb.Sampling(max_tokens=80, temperature=0)), metadata=KEY, timeout=120)
    text, calls, finish, _ = assemble(responses)
    assert finish == pb.FINISH_REASON_TOOL_CALLS and calls
    for call_id, name, arguments in calls.values():
        assert call_id and name == "get_weather"
        jsonschema.validate(json.loads(arguments), WEATHER)


def test_a_json_schema_answer_validates_against_the_schema(stub):
    fmt = pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_SCHEMA,
                            json_schema=pb.JsonSchema(name="order", schema_json=json.dumps(ORDER), strict=True))
    responses = stub.Chat(pb.ChatRequest(model=SMOLLM2_ALIAS, messages=user("Order two apples."),
                                         response_format=fmt, sampling=pb.Sampling(max_tokens=60, temperature=0)),
                          metadata=KEY, timeout=120)
    text, _, finish, _ = assemble(responses)
    assert finish == pb.FINISH_REASON_STOP
    jsonschema.validate(json.loads(text), ORDER)


def test_an_embedding_has_one_unit_vector_per_input(stub):
    answer = stub.Embed(pb.EmbedRequest(model=MINILM_ALIAS, inputs=["a cat", "a dog"]), metadata=KEY, timeout=120)
    assert [e.index for e in answer.embeddings] == [0, 1]
    for embedding in answer.embeddings:
        assert len(embedding.values) == 384
        assert abs(sum(v * v for v in embedding.values) - 1.0) < 1e-3
    assert answer.usage.prompt_tokens > 0


def test_models_are_listed_with_their_aliases(stub):
    names = {m.id for m in stub.ListModels(pb.ListModelsRequest(), metadata=KEY, timeout=30).models}
    assert {SMOLLM2_ALIAS, SMOLLM2_ID, MINILM_ALIAS} <= names


def test_a_call_without_a_key_is_unauthenticated(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListModels(pb.ListModelsRequest(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "invalid_api_key"
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Chat(pb.ChatRequest(model=SMOLLM2_ALIAS, messages=user("hi")),
                       metadata=(("authorization", "Bearer wrong"),), timeout=30))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_an_unknown_model_is_not_found_and_names_the_model_field(stub):
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Chat(pb.ChatRequest(model="no-such-model", messages=user("hi")), metadata=KEY, timeout=30))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(caught.value)
    assert info.domain == "ingot" and info.metadata["param"] == "model" and info.reason == "model_not_found"


def test_bad_input_is_invalid_argument_naming_the_rest_field(stub):
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Chat(pb.ChatRequest(model=SMOLLM2_ALIAS, messages=user("hi"),
                                      sampling=pb.Sampling(temperature=3)), metadata=KEY, timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).metadata["param"] == "temperature"
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Chat(pb.ChatRequest(model=SMOLLM2_ALIAS, messages=[pb.Message(content="no role")]),
                       metadata=KEY, timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).metadata["param"] == "messages[0].role"


def test_a_completion_streams_text_and_usage(stub):
    responses = list(stub.Complete(pb.CompleteRequest(model=SMOLLM2_ALIAS, prompts=["Once upon a time"],
                                                      sampling=pb.Sampling(max_tokens=8, temperature=0)),
                                   metadata=KEY, timeout=120))
    text = "".join(r.delta.text for r in responses if r.HasField("delta"))
    assert text and responses[-1].usage.completion_tokens == 8


def _loaded(stub: inference_grpc.InferenceServiceStub):
    models = stub.ListLoadedModels(inference_pb.ListLoadedModelsRequest(), timeout=10).models
    return next(m for m in models if m.id == SMOLLM2_ID)


def test_a_cancelled_stream_stops_its_generation(stub, api):
    channel = grpc.insecure_channel(api.mesh.addresses["inference"])
    inference = inference_grpc.InferenceServiceStub(channel)
    try:
        call = stub.Chat(pb.ChatRequest(model=SMOLLM2_ALIAS, messages=user("Write a very long story about a dragon."),
                                        sampling=pb.Sampling(max_tokens=1500, temperature=0.8)),
                         metadata=KEY, timeout=120)
        for received, _ in enumerate(call, start=1):
            if received == 5:
                break
        before = _loaded(inference)
        assert before.active_sequences == 1
        call.cancel()
        deadline = time.monotonic() + 10
        while _loaded(inference).active_sequences and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped = _loaded(inference)
        assert stopped.active_sequences == 0
        assert stopped.generated_tokens - before.generated_tokens < 200
    finally:
        channel.close()


def test_grpc_and_rest_answer_a_seeded_request_identically(stub, api):
    question = "Name three colours."
    rest = httpx.post(f"{api.mesh.base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"model": SMOLLM2_ALIAS, "messages": [{"role": "user", "content": question}],
                            "max_tokens": 24, "temperature": 0.9, "top_p": 0.95, "seed": 1234, "logprobs": True,
                            "top_logprobs": 2}, timeout=120).json()
    responses = list(stub.Chat(pb.ChatRequest(
        model=SMOLLM2_ALIAS, messages=user(question), logprobs=True, top_logprobs=2,
        sampling=pb.Sampling(max_tokens=24, temperature=0.9, top_p=0.95, seed=1234)), metadata=KEY, timeout=120))
    text, _, finish, usage = assemble(responses)
    choice = rest["choices"][0]
    assert text == choice["message"]["content"]
    assert pb.FinishReason.Name(finish).removeprefix("FINISH_REASON_").lower() == choice["finish_reason"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (rest["usage"]["prompt_tokens"],
                                                              rest["usage"]["completion_tokens"])
    tokens = [(e.token, e.logprob, [t.token for t in e.top_logprobs])
              for r in responses if r.HasField("delta") for e in r.delta.logprobs]
    assert tokens == [(e["token"], e["logprob"], [t["token"] for t in e["top_logprobs"]])
                      for e in choice["logprobs"]["content"]]


def test_health_and_reflection_answer_on_the_grpc_port(api):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    with grpc.insecure_channel(api.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="ingot.api.v1.IngotService"), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        services = {s.name for reply in replies for s in reply.list_services_response.service}
        assert "ingot.api.v1.IngotService" in services


def test_a_call_is_one_trace_from_the_grpc_span_through_the_route_to_the_services(stub, api):
    list(stub.Chat(pb.ChatRequest(model=SMOLLM2_ALIAS, messages=user("Hi"), sampling=pb.Sampling(max_tokens=2)),
                   metadata=(*KEY, ("x-request-id", "grpc-trace-1")), timeout=120))
    deadline = time.monotonic() + 10
    while True:
        spans = [json.loads(line) for line in api.spans.read_text().splitlines() if line.strip()]
        roots = [s for s in spans if s["name"].endswith("IngotService/Chat")
                 and s["attributes"].get("ingot.request_id") == "grpc-trace-1"]
        trace = [s for s in spans if roots and s["context"]["trace_id"] == roots[0]["context"]["trace_id"]]
        services = {s["resource"]["attributes"]["service.name"] for s in trace}
        if {"ingot-inference", "ingot-tokenizer"} <= services:
            break
        assert time.monotonic() < deadline, "the spans of the call never appeared in one trace"
        time.sleep(0.2)
    assert roots[0]["parent_id"] is None
    route = next(s for s in trace if s["attributes"].get("http.route") == "/v1/chat/completions"
                 or "/v1/chat/completions" in s["name"])
    assert route["attributes"]["ingot.request_id"] == "grpc-trace-1"
    generate = next(s for s in trace if s["name"].endswith("/Generate")
                    and s["resource"]["attributes"]["service.name"] == "ingot-inference")
    assert generate["attributes"]["ingot.request_id"] == "grpc-trace-1"
