"""The chat stream, piece by piece, into a Responses response and the events that stream it.

The order is what the openai SDK's stream accumulator and the Agents SDK need: `response.created`, then
`response.in_progress`; per output item `output_item.added`, for a message `content_part.added`, the text
deltas, `output_text.done`, `content_part.done`, for a call the argument deltas and `.done`; then
`output_item.done` with the whole item; last `response.completed` (or `.incomplete`, `.failed`) with the
whole response. `sequence_number` counts every event from 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edge.responses.items import new_id
from edge.responses.pieces import CallDelta, Piece
from edge.responses.schemas import ResponsesRequest

Event = dict[str, Any]

# Why an answer stopped short, in the Responses terms.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass
class ResponseBuilder:
    request: ResponsesRequest
    model: str
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "in_progress"
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    completed_at: int | None = None
    _sequence: int = 0
    # The output item being written, and which item each call index writes to.
    _open: int | None = None
    _calls: dict[int, int] = field(default_factory=dict)

    def response(self) -> dict[str, Any]:
        request = self.request
        text_format = request.text.format if request.text is not None and request.text.format else None
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": self.status,
            "completed_at": self.completed_at, "background": False, "error": self.error,
            "incomplete_details": self.incomplete_details, "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens, "model": self.model,
            "output": [_copy(item) for item in self.output],
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "reasoning": {"effort": request.reasoning.effort if request.reasoning else None,
                          "summary": request.reasoning.summary if request.reasoning else None},
            "store": request.stores, "temperature": 1.0 if request.temperature is None else request.temperature,
            "text": {"format": text_format.model_dump(by_alias=True, exclude_none=True) if text_format
                     else {"type": "text"}},
            "tool_choice": "auto" if request.tool_choice is None else request.tool_choice,
            "tools": request.tools or [], "top_p": 1.0 if request.top_p is None else request.top_p,
            "truncation": "disabled", "usage": self.usage, "user": request.user,
            "metadata": request.metadata or {}, "prompt_cache_key": request.prompt_cache_key,
            "safety_identifier": request.safety_identifier, "service_tier": request.service_tier or "default",
        }

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def start(self) -> list[Event]:
        return [self._event("response.created", response=self.response()),
                self._event("response.in_progress", response=self.response())]

    def add(self, piece: Piece) -> list[Event]:
        events: list[Event] = []
        if piece.text:
            events += self._text(piece.text)
        for call in piece.calls:
            events += self._call(call)
        return events

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self.output[self._open]["type"] != "message":
            events += self._close()
            item = {"id": new_id("msg"), "type": "message", "role": "assistant", "status": "in_progress",
                    "content": []}
            events += self._open_item(item)
            part = {"type": "output_text", "text": "", "annotations": []}
            item["content"].append(part)
            events.append(self._event("response.content_part.added", item_id=item["id"], output_index=self._open,
                                      content_index=0, part=dict(part)))
        item = self.output[self._open]
        if not text:
            return events
        item["content"][0]["text"] += text
        events.append(self._event("response.output_text.delta", item_id=item["id"], output_index=self._open,
                                  content_index=0, delta=text, logprobs=[]))
        return events

    def _call(self, call: CallDelta) -> list[Event]:
        events: list[Event] = []
        if call.index not in self._calls:
            events += self._close()
            item = {"id": new_id("fc"), "type": "function_call", "call_id": call.id or new_id("call"),
                    "name": call.name, "arguments": "", "status": "in_progress"}
            events += self._open_item(item)
            self._calls[call.index] = self._open
        position = self._calls[call.index]
        if position != self._open:
            # The engine finishes one call before it starts the next; a late fragment would be a bug there.
            raise ValueError(f"a fragment of call {call.index} came after a later output item")
        item = self.output[position]
        if call.arguments:
            item["arguments"] += call.arguments
            events.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                      output_index=position, delta=call.arguments))
        return events

    def _open_item(self, item: dict[str, Any]) -> list[Event]:
        self.output.append(item)
        self._open = len(self.output) - 1
        return [self._event("response.output_item.added", output_index=self._open, item=_copy(item))]

    def _close(self, status: str = "completed") -> list[Event]:
        if self._open is None:
            return []
        position, item = self._open, self.output[self._open]
        self._open = None
        item["status"] = status
        events: list[Event] = []
        if item["type"] == "message":
            part = item["content"][0]
            events.append(self._event("response.output_text.done", item_id=item["id"], output_index=position,
                                      content_index=0, text=part["text"], logprobs=[]))
            events.append(self._event("response.content_part.done", item_id=item["id"], output_index=position,
                                      content_index=0, part=dict(part)))
        else:
            events.append(self._event("response.function_call_arguments.done", item_id=item["id"],
                                      output_index=position, name=item["name"], arguments=item["arguments"]))
        events.append(self._event("response.output_item.done", output_index=position, item=_copy(item)))
        return events

    def finish(self, finish_reason: str, input_tokens: int, output_tokens: int) -> list[Event]:
        """The closing events, once the chat stream has ended with `finish_reason`."""
        events: list[Event] = []
        if not self.output:
            # An answer with nothing in it is still one (empty) message, so output_text is "" not missing.
            events += self._text("")
        reason = _INCOMPLETE.get(finish_reason)
        events += self._close("incomplete" if reason else "completed")
        self.usage = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens,
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}}
        self.completed_at = int(time.time())
        if reason:
            self.status, self.incomplete_details = "incomplete", {"reason": reason}
            events.append(self._event("response.incomplete", response=self.response()))
        else:
            self.status = "completed"
            events.append(self._event("response.completed", response=self.response()))
        return events

    def fail(self, code: str, message: str) -> list[Event]:
        """The last event of a stream that failed after it started."""
        self.status, self.error = "failed", {"code": code, "message": message}
        return [self._event("response.failed", response=self.response())]


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    copied = dict(item)
    if "content" in copied:
        copied["content"] = [dict(part) for part in copied["content"]]
    return copied
