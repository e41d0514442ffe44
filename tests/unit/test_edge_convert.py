"""Between OpenAI's schemas and the services' protobuf messages."""

from __future__ import annotations

import json

import pytest

from edge.mesh import convert
from edge.openai.models import entries
from edge.openai.parsing import parse_chat_request
from ingot.common.v1 import common_pb2
from ingot.registry.v1 import registry_service_pb2 as registry_pb2


def test_every_finish_reason_has_an_openai_name() -> None:
    reasons = {value for name, value in common_pb2.FinishReason.items() if value}
    assert set(convert.FINISH_REASONS) == reasons
    assert convert.FINISH_REASONS[common_pb2.FINISH_REASON_STOP] == "stop"
    assert convert.FINISH_REASONS[common_pb2.FINISH_REASON_LENGTH] == "length"
    assert convert.FINISH_REASONS[common_pb2.FINISH_REASON_TOOL_CALLS] == "tool_calls"


def test_messages() -> None:
    request = parse_chat_request(b'{"model": "m", "messages": ['
                                 b'{"role": "user", "name": "ann", "content": [{"type": "text", "text": "a"},'
                                 b' {"type": "text", "text": "b"}]},'
                                 b'{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",'
                                 b' "function": {"name": "f", "arguments": "{}"}}]},'
                                 b'{"role": "tool", "tool_call_id": "c", "content": ""}]}')
    user, assistant, tool = (convert.chat_message(m) for m in request.messages)
    assert (user.role, user.name, user.content) == ("user", "ann", "a\nb")
    assert not assistant.HasField("content")
    assert assistant.tool_calls[0] == common_pb2.ToolCall(
        id="c", type="function", function=common_pb2.FunctionCall(name="f", arguments="{}"))
    assert tool.HasField("content") and tool.content == "" and tool.tool_call_id == "c"


def test_sampling_sets_only_what_was_asked() -> None:
    chat = parse_chat_request(
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "temperature": 0}')
    params = convert.sampling_params(chat, chat.token_limit)
    assert params.HasField("max_tokens") and params.max_tokens == 5
    assert params.HasField("temperature") and params.temperature == 0
    assert not params.HasField("top_p") and not params.HasField("seed") and not params.logprobs


def test_every_sampling_field_reaches_the_proto() -> None:
    chat = parse_chat_request(json.dumps({
        "model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": 7, "seed": -1,
        "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"42": -100}, "stop": "END",
        "logprobs": True, "top_logprobs": 3, "repetition_penalty": 1.2}).encode())
    params = convert.sampling_params(chat, None)
    assert params.top_k == 7 and params.seed == 2**64 - 1
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -0.5)
    assert dict(params.logit_bias) == {42: -100.0} and list(params.stop) == ["END"]
    assert params.logprobs and params.top_logprobs == 3
    assert params.repetition_penalty == pytest.approx(1.2)


def test_random_seed_is_foundrys_seed() -> None:
    chat = parse_chat_request(b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "random_seed": 9}')
    assert convert.sampling_params(chat, None).seed == 9


def test_developer_messages_render_as_system() -> None:
    chat = parse_chat_request(b'{"model": "m", "messages": [{"role": "developer", "content": "be brief"}]}')
    assert convert.chat_message(chat.messages[0]).role == "system"


def test_model_entries_list_aliases_once() -> None:
    models = [registry_pb2.ModelInfo(id="a:2", alias="a", publisher="p", created=2),
              registry_pb2.ModelInfo(id="a:1", alias="a", publisher="p", created=1),
              registry_pb2.ModelInfo(id="b:1", publisher="q")]
    assert [(e.id, e.created) for e in entries(models)] == [("a:2", 2), ("a", 2), ("a:1", 1), ("b:1", 0)]
