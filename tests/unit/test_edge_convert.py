"""Between OpenAI's schemas and the services' protobuf messages."""

from __future__ import annotations

from edge import convert
from edge.models import entries
from edge.parsing import parse_chat_request
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as inference_pb2
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
    params = convert.sampling_params(parse_chat_request(
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "temperature": 0}'))
    assert params.HasField("max_tokens") and params.max_tokens == 5
    assert params.HasField("temperature") and params.temperature == 0
    assert not params.HasField("top_p")


def test_usage_falls_back_to_counts() -> None:
    reported = inference_pb2.GenerateResponse(usage=common_pb2.Usage(prompt_tokens=4, completion_tokens=2,
                                                                     total_tokens=6))
    assert convert.usage(reported, 9, 9).model_dump() == {"prompt_tokens": 4, "completion_tokens": 2,
                                                          "total_tokens": 6}
    assert convert.usage(inference_pb2.GenerateResponse(), 3, 2).total_tokens == 5


def test_model_entries_list_aliases_once() -> None:
    models = [registry_pb2.ModelInfo(id="a:2", alias="a", publisher="p", created=2),
              registry_pb2.ModelInfo(id="a:1", alias="a", publisher="p", created=1),
              registry_pb2.ModelInfo(id="b:1", publisher="q")]
    assert [(e.id, e.created) for e in entries(models)] == [("a:2", 2), ("a", 2), ("a:1", 1), ("b:1", 0)]
