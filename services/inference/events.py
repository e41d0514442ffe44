"""What the engine thread tells a request's handler, through its asyncio queue."""

from __future__ import annotations

from dataclasses import dataclass

from ingot.common.errors import IngotError
from services.inference.logits import LogprobEntry


@dataclass(frozen=True)
class Tokens:
    index: int
    token_id: int
    text: str
    logprob: LogprobEntry | None = None


@dataclass(frozen=True)
class PromptScored:
    index: int
    entries: list[LogprobEntry]


@dataclass(frozen=True)
class Finished:
    index: int
    reason: int  # common_pb2.FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    index: int
    error: IngotError


Event = Tokens | PromptScored | Finished | Failed
