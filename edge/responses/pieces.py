"""What the chat pipeline hands the Responses surface: plain pieces of an answer, no protobuf."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CallDelta:
    """A fragment of one tool call: its first carries the id and name, later ones more arguments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Piece:
    """What one message of the chat stream adds."""

    text: str = ""
    calls: Sequence[CallDelta] = ()
    # Chat's finish reason ("stop", "length", "tool_calls", "content_filter") on the last piece.
    finish_reason: str | None = None
