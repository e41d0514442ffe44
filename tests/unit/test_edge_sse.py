"""SSE framing: data lines only, one event per frame, [DONE] last."""

from __future__ import annotations

import json

from edge.shared import sse


def test_one_line_event() -> None:
    assert sse.frame('{"a": 1}') == b'data: {"a": 1}\n\n'


def test_a_newline_never_ends_an_event_early() -> None:
    framed = sse.frame("one\ntwo\r\nthree\rfour")
    assert framed == b"data: one\ndata: two\ndata: three\ndata: four\n\n"
    assert framed.count(b"\n\n") == 1


def test_json_text_with_newlines_stays_one_line() -> None:
    payload = json.dumps({"content": "line one\nline two\r\n"})
    framed = sse.frame(payload)
    assert framed.count(b"\n") == 2
    assert json.loads(framed.removeprefix(b"data: ").removesuffix(b"\n\n")) == {"content": "line one\nline two\r\n"}


def test_utf8() -> None:
    assert sse.frame("héllo ✓") == "data: héllo ✓\n\n".encode()


def test_done_and_headers() -> None:
    assert sse.DONE == b"data: [DONE]\n\n"
    assert sse.HEADERS == {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                           "X-Accel-Buffering": "no"}
