"""Property tests (hypothesis) of the pure parts: SSE framing, stop strings across token boundaries,
the error mapping's round trip over gRPC, and the catalog parser on arbitrary JSON."""

from __future__ import annotations

import grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.shared.sse import frame
from ingot.common.errors import BY_GRPC_CODE, error_from_rpc, to_trailing_metadata
from services.inference.stops import Piece, StopMatcher
from services.registry.catalog import Entry, parse_catalog

settings.register_profile("ingot", max_examples=60, deadline=None)
settings.load_profile("ingot")

# Emoji, CJK, combining marks and line breaks of every kind, beside plain ASCII.
# Any Unicode text: lone surrogates are not Unicode, and the edge refuses them at the door (see below).
TEXT = st.text(alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)),
                                  st.sampled_from("🐉画龍\r\n\u2028é\u0301")), max_size=60)


def _unframe(event: bytes) -> str:
    text = event.decode("utf-8")
    assert text.endswith("\n\n")
    lines = text[:-2].split("\n")
    assert all(line.startswith("data: ") for line in lines)
    return "\n".join(line[len("data: "):] for line in lines)


@given(TEXT)
def test_an_sse_frame_carries_any_text_back_intact_as_one_event(text):
    event = frame(text)
    assert event.count(b"\n\n") == 1
    assert _unframe(event) == text.replace("\r\n", "\n").replace("\r", "\n")


def _pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in zip(points, points[1:])]


@given(TEXT, st.text(min_size=1, max_size=4, alphabet=st.sampled_from("ab🐉画\n")), st.lists(st.integers(0, 200)))
def test_stop_string_matching_does_not_depend_on_where_tokens_split(text, stop, cuts):
    matcher = StopMatcher((stop,))
    released: list[str] = []
    stopped = False
    for index, piece in enumerate(_pieces(text, cuts)):
        release = matcher.feed(Piece(index, piece))
        released += [p.text for p in release.pieces]
        if release.stopped:
            stopped = True
            break
    if not stopped:
        released += [p.text for p in matcher.flush()]
    out = "".join(released)
    cut = text.find(stop)
    assert stopped == (cut >= 0)
    assert out == (text[:cut] if cut >= 0 else text)
    assert stop not in out


class _Failed(grpc.RpcError):
    def __init__(self, code, message, metadata):
        self._code, self._message, self._metadata = code, message, metadata

    def code(self):
        return self._code

    def details(self):
        return self._message

    def trailing_metadata(self):
        return self._metadata


@given(st.sampled_from(sorted(BY_GRPC_CODE.items(), key=lambda item: item[0].name)),
       st.text(min_size=1, max_size=80), st.one_of(st.none(), st.text(min_size=1, max_size=20)))
def test_every_error_survives_the_trip_over_grpc(code_and_class, message, param):
    code, cls = code_and_class
    sent = cls(message, param=param)
    received = error_from_rpc(_Failed(code, message, to_trailing_metadata(sent)), service="tokenizer")
    assert type(received) is cls
    assert (received.message, received.param, received.http_status) == (message, param, sent.http_status)
    assert 400 <= received.http_status <= 599


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=4), max_leaves=20)


@given(st.lists(JSON, max_size=5))
def test_the_catalog_parser_skips_what_it_cannot_use_and_never_crashes(data):
    entries = parse_catalog(data, "http://127.0.0.1:1/")
    assert all(isinstance(entry, Entry) for entry in entries)
    assert len(entries) <= len(data)
