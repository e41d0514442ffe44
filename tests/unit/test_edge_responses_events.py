"""The chat stream into Responses events: their order, sequence numbers and the final response."""

from __future__ import annotations

from edge.responses.events import ResponseBuilder
from edge.responses.pieces import CallDelta, Piece
from edge.responses.schemas import ResponsesRequest


def _builder(**fields) -> ResponseBuilder:
    return ResponseBuilder(ResponsesRequest.model_validate({"model": "m", "input": "x", **fields}), "model-id")


def _run(builder: ResponseBuilder, pieces, finish: str = "stop") -> list[dict]:
    events = builder.start()
    for piece in pieces:
        events += builder.add(piece)
    return events + builder.finish(finish, 10, 3)


def test_a_text_answer_streams_every_event_in_order_with_consecutive_sequence_numbers():
    builder = _builder()
    events = _run(builder, [Piece(text="Hel"), Piece(text="lo")])
    assert [event["type"] for event in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["total_tokens"] == 13 and final["usage"]["input_tokens_details"]["cached_tokens"] == 0
    # The added item is a snapshot: later text does not leak into the event already sent.
    assert events[2]["item"]["content"] == [] and events[2]["item"]["status"] == "in_progress"


def test_calls_close_the_message_before_them_and_each_gets_its_own_item():
    builder = _builder()
    events = _run(builder, [Piece(text="Let me check."),
                            Piece(calls=[CallDelta(0, "call_a", "f", '{"x": ')]),
                            Piece(calls=[CallDelta(0, arguments="1}")]),
                            Piece(calls=[CallDelta(1, "call_b", "g", "{}")])], finish="tool_calls")
    output = builder.response()["output"]
    assert [item["type"] for item in output] == ["message", "function_call", "function_call"]
    assert output[1]["call_id"] == "call_a" and output[1]["arguments"] == '{"x": 1}'
    assert output[2]["name"] == "g" and all(item["status"] == "completed" for item in output)
    done = [event for event in events if event["type"] == "response.function_call_arguments.done"]
    assert [event["arguments"] for event in done] == ['{"x": 1}', "{}"]
    kinds = [event["type"] for event in events]
    assert kinds.index("response.output_item.done") < kinds.index("response.function_call_arguments.delta")


def test_an_answer_cut_by_length_is_incomplete_with_the_reason():
    builder = _builder(max_output_tokens=3)
    events = _run(builder, [Piece(text="one two")], finish="length")
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["status"] == "incomplete"


def test_an_empty_answer_is_one_empty_message():
    builder = _builder()
    _run(builder, [])
    assert builder.response()["output"][0]["content"][0]["text"] == ""


def test_the_response_echoes_the_request_and_a_failure_carries_its_error():
    builder = _builder(instructions="Be brief.", tools=[{"type": "web_search"}], store=False, metadata={"a": "b"})
    body = builder.response()
    assert body["instructions"] == "Be brief." and body["tools"] == [{"type": "web_search"}]
    assert body["store"] is False and body["metadata"] == {"a": "b"} and body["tool_choice"] == "auto"
    assert body["error"] is None and body["incomplete_details"] is None and body["parallel_tool_calls"] is True
    [failed] = builder.fail("server_error", "boom")
    assert failed["type"] == "response.failed" and failed["response"]["error"] == {"code": "server_error",
                                                                                    "message": "boom"}
