"""The tokenizer service over gRPC, resolving names through a real registry, on a cache without weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from tokenizers import Tokenizer

from ingot.common.channels import insecure_channel
from ingot.common.errors import InvalidArgument, NotFound, Unavailable, error_from_rpc
from ingot.common.grpcserver import ServiceHost
from ingot.common.v1 import common_pb2
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc
from ingot.tokenizer.v1 import tokenizer_service_pb2 as pb
from ingot.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from ingot.common.resolver import ModelResolver
from services.tokenizer.server import SERVICE_NAME
from services.tokenizer.servicer import TokenizerServicer
from tests.conftest import SMOLLM2_ALIAS, SMOLLM2_ID
from tests.integration.helpers import health, serve_registry, start_process, stop_process

EMBEDDING_ID = "Tokenizer-Only-Embeddings-generic-cpu:1"


def msg(role: str, content: str | None = None, **fields) -> common_pb2.ChatMessage:
    message = common_pb2.ChatMessage(role=role, **fields)
    if content is not None:
        message.content = content
    return message


CONVERSATION = [msg("system", "You answer in one word."), msg("user", "Capital of France?"),
                msg("assistant", "Paris."), msg("user", "And of Italy? Café ☕")]


async def serve_tokenizer(registry_address: str):
    channel = insecure_channel(registry_address)
    host = ServiceHost("tokenizer", [SERVICE_NAME])
    resolver = ModelResolver(registry_grpc.RegistryServiceStub(channel))
    pb_grpc.add_TokenizerServiceServicer_to_server(TokenizerServicer(resolver), host.server)
    address = await host.start("127.0.0.1:0")
    await host.set_serving(True)
    return host, channel, address


@pytest.fixture
def home(tokenizer_only_home: Path) -> Path:
    """SmolLM2's tokenizer files, plus a copy dressed as an embeddings model to test task checks."""
    [smollm2] = (tokenizer_only_home / "models").glob("*/*/inference_model.json")
    embeddings = tokenizer_only_home / "models" / "Test" / "Tokenizer-Only-Embeddings-generic-cpu-1"
    shutil.copytree(smollm2.parent, embeddings)
    manifest = json.loads((embeddings / "inference_model.json").read_text())
    manifest.update(Name=EMBEDDING_ID, Alias="tokenizer-only-embeddings", Task="embeddings")
    (embeddings / "inference_model.json").write_text(json.dumps(manifest))
    return tokenizer_only_home


@pytest.fixture
async def tokenizer(home: Path):
    registry_host, registry_address = await serve_registry(home / "models")
    host, registry_channel, address = await serve_tokenizer(registry_address)
    async with grpc.aio.insecure_channel(address) as channel:
        yield pb_grpc.TokenizerServiceStub(channel)
    await host.stop(0)
    await registry_channel.close()
    await registry_host.stop(0)


async def apply(stub, messages, model: str = SMOLLM2_ALIAS, **fields) -> pb.ApplyChatTemplateResponse:
    return await stub.ApplyChatTemplate(pb.ApplyChatTemplateRequest(model=model, messages=messages, **fields),
                                        timeout=10)


async def encode(stub, text: str, model: str = SMOLLM2_ALIAS, add_special_tokens: bool = False) -> list[int]:
    request = pb.EncodeRequest(model=model, text=text, add_special_tokens=add_special_tokens)
    return list((await stub.Encode(request, timeout=10)).token_ids)


async def failure(call) -> tuple[grpc.StatusCode, object]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), error_from_rpc(caught.value)


async def test_apply_chat_template_ids_are_the_encoding_of_its_prompt(tokenizer):
    response = await apply(tokenizer, CONVERSATION)
    assert response.prompt.startswith("<|im_start|>system\nYou answer in one word.<|im_end|>\n")
    assert response.prompt.endswith("<|im_start|>user\nAnd of Italy? Café ☕<|im_end|>\n<|im_start|>assistant\n")
    assert list(response.token_ids) == await encode(tokenizer, response.prompt)


async def test_apply_chat_template_by_full_name_and_by_alias_agree(tokenizer):
    by_alias = await apply(tokenizer, CONVERSATION)
    by_name = await apply(tokenizer, CONVERSATION, model=SMOLLM2_ID.upper())
    assert by_name == by_alias


async def test_the_template_markers_are_single_special_tokens(tokenizer):
    response = await apply(tokenizer, [msg("user", "Hi")])
    im_start = await encode(tokenizer, "<|im_start|>")
    assert len(im_start) == 1
    assert list(response.token_ids).count(im_start[0]) == 3


async def test_continue_final_message_ends_the_prompt_inside_the_assistant_message(tokenizer):
    response = await apply(tokenizer, [msg("user", "Count to three"), msg("assistant", "One, two,")],
                           continue_final_message=True)
    assert response.prompt.endswith("<|im_start|>assistant\nOne, two,")


async def test_add_generation_prompt_false_leaves_out_the_assistant_opening(tokenizer):
    without = await apply(tokenizer, [msg("user", "Hi")], add_generation_prompt=False)
    default = await apply(tokenizer, [msg("user", "Hi")])
    assert without.prompt.endswith("<|im_start|>user\nHi<|im_end|>\n")
    assert default.prompt == without.prompt + "<|im_start|>assistant\n"


async def test_add_generation_prompt_with_continue_final_message_is_invalid(tokenizer):
    code, error = await failure(apply(tokenizer, [msg("assistant", "On")], add_generation_prompt=True,
                                      continue_final_message=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.param == "add_generation_prompt"


async def test_count_tokens_of_a_conversation_equals_the_templated_ids(tokenizer):
    tools_json = json.dumps([{"type": "function", "function": {"name": "capital"}}])
    applied = await apply(tokenizer, CONVERSATION, tools_json=tools_json)
    request = pb.CountTokensRequest(model=SMOLLM2_ALIAS,
                                    conversation=pb.Conversation(messages=CONVERSATION, tools_json=tools_json))
    assert (await tokenizer.CountTokens(request, timeout=10)).token_count == len(applied.token_ids)


async def test_count_tokens_of_a_text_equals_its_encoding(tokenizer):
    text = "The quick brown fox jumps over the lazy dog. " * 20
    request = pb.CountTokensRequest(model=SMOLLM2_ALIAS, text=text)
    assert (await tokenizer.CountTokens(request, timeout=10)).token_count == len(await encode(tokenizer, text))


async def test_count_tokens_without_input_is_invalid_argument(tokenizer):
    code, error = await failure(tokenizer.CountTokens(pb.CountTokensRequest(model=SMOLLM2_ALIAS), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and error.param == "input"


async def test_decode_round_trips_the_templated_prompt(tokenizer):
    response = await apply(tokenizer, CONVERSATION)
    decoded = await tokenizer.Decode(pb.DecodeRequest(model=SMOLLM2_ALIAS, token_ids=response.token_ids), timeout=10)
    assert decoded.text == response.prompt


async def test_decode_skips_special_tokens_when_asked(tokenizer):
    response = await apply(tokenizer, [msg("user", "Hi")])
    request = pb.DecodeRequest(model=SMOLLM2_ALIAS, token_ids=response.token_ids, skip_special_tokens=True)
    text = (await tokenizer.Decode(request, timeout=10)).text
    assert "<|im_start|>" not in text and "<|im_end|>" not in text
    assert "user\nHi" in text


async def test_decode_of_an_id_outside_the_vocabulary_is_invalid_argument(tokenizer):
    request = pb.DecodeRequest(model=SMOLLM2_ALIAS, token_ids=[1, 10_000_000])
    code, error = await failure(tokenizer.Decode(request, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and error.param == "token_ids[1]"


async def test_encode_and_decode_round_trip_unicode_text(tokenizer):
    text = "naïve café — 東京 🚀"
    ids = await encode(tokenizer, text)
    decoded = await tokenizer.Decode(pb.DecodeRequest(model=SMOLLM2_ALIAS, token_ids=ids), timeout=10)
    assert decoded.text == text


@pytest.mark.parametrize("rpc", ["apply", "encode"])
async def test_an_unknown_model_is_not_found_on_param_model(tokenizer, rpc):
    call = apply(tokenizer, [msg("user", "Hi")], model="gpt-4o") if rpc == "apply" else encode(tokenizer, "x", "gpt-4o")
    code, error = await failure(call)
    assert code == grpc.StatusCode.NOT_FOUND
    assert isinstance(error, NotFound) and error.param == "model"
    assert "gpt-4o" in error.message


async def test_an_unknown_role_is_invalid_argument_naming_the_message(tokenizer):
    code, error = await failure(apply(tokenizer, [msg("user", "Hi"), msg("wizard", "Abracadabra")]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(error, InvalidArgument) and error.param == "messages[1].role"


async def test_a_message_the_template_cannot_render_is_invalid_argument_on_messages(tokenizer):
    # SmolLM2's template adds each message's content to a string: a user turn without content breaks it.
    code, error = await failure(apply(tokenizer, [msg("user", "Hi"), msg("user")]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and error.param == "messages"


CAPITAL_TOOL = {"type": "function", "function": {"name": "capital", "description": "The capital of a country",
                                                 "parameters": {"type": "object",
                                                                "properties": {"country": {"type": "string"}}}}}


async def test_tools_reach_a_template_without_a_tools_section_through_the_system_message(tokenizer):
    response = await apply(tokenizer, [msg("user", "Capital of Italy?")], tools_json=json.dumps([CAPITAL_TOOL]))
    assert response.prompt.startswith("<|im_start|>system\n# Tools\n")
    assert '{"type": "function", "function": {"name": "capital"' in response.prompt
    assert "<tool_call>" in response.prompt
    # The tools section takes the place of SmolLM2's default system prompt.
    assert "SmolLM" not in response.prompt


async def test_calls_and_tool_results_in_the_history_render_in_the_call_format(tokenizer):
    call = common_pb2.ToolCall(id="c1", type="function",
                               function=common_pb2.FunctionCall(name="capital", arguments='{"country": "Italy"}'))
    response = await apply(tokenizer, [msg("user", "Capital of Italy?"), msg("assistant", tool_calls=[call]),
                                       msg("tool", "Rome", tool_call_id="c1")], tools_json=json.dumps([CAPITAL_TOOL]))
    assert response.prompt.endswith(
        '<|im_start|>assistant\n<tool_call>\n{"name": "capital", "arguments": {"country": "Italy"}}\n</tool_call>'
        "<|im_end|>\n<|im_start|>user\n<tool_response>\nRome\n</tool_response><|im_end|>\n<|im_start|>assistant\n")


async def test_bad_tools_json_is_invalid_argument_on_tools(tokenizer):
    code, error = await failure(apply(tokenizer, [msg("user", "Hi")], tools_json="{not json"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and error.param == "tools"


async def test_a_model_that_is_not_a_chat_model_has_no_chat_template(tokenizer):
    code, error = await failure(apply(tokenizer, [msg("user", "Hi")], model="tokenizer-only-embeddings"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and error.param == "model"
    assert "tokenizer-only-embeddings" in error.message
    assert await encode(tokenizer, "Hi", model="tokenizer-only-embeddings") == await encode(tokenizer, "Hi")


async def test_an_unreachable_registry_is_unavailable_and_says_so(unused_tcp_port):
    host, channel, address = await serve_tokenizer(f"127.0.0.1:{unused_tcp_port}")
    try:
        async with grpc.aio.insecure_channel(address) as client:
            code, error = await failure(encode(pb_grpc.TokenizerServiceStub(client), "x"))
    finally:
        await host.stop(0)
        await channel.close()
    assert code == grpc.StatusCode.UNAVAILABLE
    assert isinstance(error, Unavailable) and "registry" in error.message


async def test_ingot_tokenizer_runs_as_a_process_that_prints_its_address_and_answers_health(home):
    registry_host, registry_address = await serve_registry(home / "models")
    process, address = start_process(["tokenizer", "--listen", "127.0.0.1:0", "--registry-address", registry_address])
    try:
        assert await health(address, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(address) as channel:
            ids = await encode(pb_grpc.TokenizerServiceStub(channel), "Hello, world")
        [tokenizer_json] = (home / "models").glob("HuggingFaceTB/*/tokenizer.json")
        assert ids == Tokenizer.from_file(str(tokenizer_json)).encode("Hello, world", add_special_tokens=False).ids
    finally:
        assert stop_process(process) == 0
        await registry_host.stop(0)


@pytest.mark.parametrize("with_system", [True, False], ids=["system", "no-system"])
async def test_rendering_matches_onnxruntime_genai_for_smollm2(tokenizer, smollm2_dir, with_system, monkeypatch):
    """Prompts from our renderer, tokenized by the service, equal onnxruntime-genai's: the engine and the
    tokenizer service must agree on what a conversation costs and how it starts.
    """
    monkeypatch.setenv("ORT_DISABLE_TELEMETRY", "1")
    og = pytest.importorskip("onnxruntime_genai")
    conversation = [
        {"role": "user", "content": "Write a haiku about rust."},
        {"role": "assistant",
         "content": "Iron sleeps in rain,\nred bloom on the garden gate,\ntime's slow patient kiss."},
        {"role": "user", "content": "Now one about \"quotes\", <tags> & naïve unicode ☕."},
    ]
    if with_system:
        conversation.insert(0, {"role": "system", "content": "You are a poet.\nAnswer in verse."})
    model = og.Model(str(smollm2_dir))
    og_tokenizer = og.Tokenizer(model)
    expected_prompt = og_tokenizer.apply_chat_template(json.dumps(conversation), add_generation_prompt=True)
    expected_ids = [int(i) for i in og_tokenizer.encode(expected_prompt)]

    response = await apply(tokenizer, [msg(m["role"], m["content"]) for m in conversation])
    assert response.prompt == expected_prompt
    assert list(response.token_ids) == expected_ids
