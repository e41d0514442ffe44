"""Stop strings, matched across token boundaries without ever leaking a partial match to the client.

Tokens are held back while the text at the end of the output could still grow into a stop string; they
are released as soon as it cannot. On a match the text before it is released and the rest is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Piece:
    """A generated token with its text and, when asked for, its log probability entry. Text released
    after its token went out (held back for a tool-call marker that never came) has no token id."""

    token_id: int | None
    text: str
    logprob: Any = None


@dataclass
class Release:
    pieces: list[Piece]
    # True when a stop string matched: the choice is over.
    stopped: bool = False


def _held_suffix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of text that is a proper prefix of some stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


@dataclass
class StopMatcher:
    stops: tuple[str, ...]
    _held: list[Piece] = field(default_factory=list)

    def feed(self, piece: Piece) -> Release:
        if not self.stops:
            return Release([piece])
        self._held.append(piece)
        text = "".join(p.text for p in self._held)
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            released = self._take_before(cut)
            before = cut - sum(len(p.text) for p in released)
            if before and self._held:
                straddling = self._held[0]
                released.append(Piece(straddling.token_id, straddling.text[:before], straddling.logprob))
            self._held.clear()
            return Release(released, stopped=True)
        return Release(self._take_before(len(text) - _held_suffix(text, self.stops)))

    def flush(self) -> list[Piece]:
        """What is still held when the choice ends for another reason: it never became a stop string."""
        held, self._held = self._held, []
        return held

    def _take_before(self, end: int) -> list[Piece]:
        """Releases the held pieces that lie entirely before text offset `end`."""
        released: list[Piece] = []
        offset = 0
        while self._held and offset + len(self._held[0].text) <= end:
            piece = self._held.pop(0)
            offset += len(piece.text)
            released.append(piece)
        return released
