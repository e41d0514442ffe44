"""What chat and text completions share: the chat-model check, Generate calls merged into one stream with
their errors translated, per-choice bookkeeping, and the SSE answer that opens only once every call has
sent its first message.

Nothing is sent before that first message, so a failure up to there (unknown model, service down, prompt
too long, queue full) still answers with its real status and a JSON body; a later one becomes one error
event in place of `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from aiohttp import web

from edge.mesh import convert
from edge.shared import observability
from edge.mesh.backends import Backends, translated_stream
from edge.mesh.messages import GenerateResponse, ModelInfo, Tagged, TokenLogprob, is_final, serves_chat, task_name
from edge.shared.errors import Failure, error_body
from edge.openai.schemas import Usage
from edge.shared.sse import EventStream
from ingot.common.errors import IngotError, Internal, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

# Messages read ahead of a slow client, across all the calls of one answer.
_MERGE_BUFFER = 64

async def chat_model(backends: Backends, name: str, route: str) -> ModelInfo:
    observability.note_model(name)
    model = await backends.resolve_model(name)
    if not serves_chat(model):
        raise InvalidArgument(f"Model '{name}' is a {task_name(model)} model; {route} need a chat-completion model.",
                              param="model")
    return model


_END = object()


def interrupted(error: Exception) -> Exception:
    """A generation cut after it started: before that, it was asked again of another replica
    (edge/mesh/failover.py); after it, only the client can, and it should know the answer it has is incomplete."""
    if isinstance(error, Unavailable):
        return Unavailable("The inference replica generating this answer went away after it had started; the "
                           "answer is incomplete. Sending the request again is safe.", code="generation_interrupted")
    return error


async def merged(calls: Sequence[grpc.aio.UnaryStreamCall]) -> AsyncIterator[Tagged]:
    """The messages of every call as they arrive, each tagged with its call's position. The first failure
    of any call ends the whole stream with that failure. Closing the stream cancels every call still running,
    so no read can keep the close waiting."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=_MERGE_BUFFER)

    async def pump(position: int, call: grpc.aio.UnaryStreamCall) -> None:
        started = False
        try:
            async for message in translated_stream(call, "inference"):
                started = True
                await queue.put((position, message))
        except Exception as error:  # noqa: BLE001 - handed to the reader, which raises it
            await queue.put((position, interrupted(error) if started else error))
        else:
            await queue.put((position, _END))

    pumps = [asyncio.create_task(pump(position, call)) for position, call in enumerate(calls)]
    try:
        running = len(pumps)
        while running:
            position, item = await queue.get()
            if item is _END:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield position, item
    finally:
        for call in calls:
            call.cancel()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def opening(messages: AsyncIterator[Tagged], calls: int) -> AsyncIterator[Tagged]:
    """`messages` again, after reading ahead until each of the `calls` has sent something: the point up to
    which an answer can still fail with a real HTTP status."""
    ahead: list[Tagged] = []
    seen: set[int] = set()
    while len(seen) < calls:
        item = await anext(messages, None)
        if item is None:
            raise Internal("The inference service ended a stream without a finish reason.")
        ahead.append(item)
        seen.add(item[0])

    async def replay() -> AsyncIterator[Tagged]:
        for item in ahead:
            yield item
        async for item in messages:
            yield item

    return replay()


def choice_index(position: int, index: int, n: int) -> int:
    """OpenAI numbers a batch's choices prompt by prompt: prompt p's choice i is p * n + i."""
    return position * n + index


@dataclass
class ChoiceState:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    final: GenerateResponse | None = None
    # Streaming: whether this choice's first chunk went out.
    opened: bool = False


class Choices:
    """Every choice of one answer, numbered as the client sees them, and the usage counted from them."""

    def __init__(self, prompt_tokens: Sequence[int], n: int) -> None:
        self.prompt_tokens = sum(prompt_tokens)
        self.n = n
        self.states = [ChoiceState() for _ in range(len(prompt_tokens) * n)]
        self._counted = 0

    def add(self, position: int, message: GenerateResponse) -> tuple[int, ChoiceState]:
        if message.index >= self.n:
            raise Internal(f"The inference service sent choice {message.index} of {self.n}.")
        index = choice_index(position, message.index, self.n)
        state = self.states[index]
        state.text.append(message.text)
        state.logprobs.extend(message.logprobs)
        state.prompt_logprobs.extend(message.prompt_logprobs)
        self._counted += len(message.token_ids)
        if is_final(message):
            state.final = message
        return index, state

    def finish_reason(self, index: int) -> str:
        final = self.states[index].final
        if final is None:
            raise Internal("The inference service ended the stream without a finish reason.")
        reason = convert.FINISH_REASONS.get(final.finish_reason)
        if reason is None:
            raise Internal(f"The inference service sent an unknown finish reason ({final.finish_reason}).")
        return reason

    def finish_reasons(self) -> list[str]:
        return [self.finish_reason(index) for index in range(len(self.states))]

    def usage(self) -> Usage:
        finals = [state.final for state in self.states]
        if all(final is not None and final.HasField("usage") for final in finals):
            completion = sum(final.usage.completion_tokens for final in finals)
        else:
            completion = self._counted
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=completion,
                     total_tokens=self.prompt_tokens + completion)


async def generate(calls: Sequence[grpc.aio.UnaryStreamCall],
                   answer: Callable[[AsyncIterator[Tagged]], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Runs `answer` over the merged messages of `calls`. Whatever ends it (the answer is complete, the client
    went away and aiohttp cancelled the handler, a write found the connection closed, an error) also ends
    every call, so the inference service never keeps generating for nobody."""
    stream = observability.observe(merged(calls))
    try:
        return await answer(stream)
    finally:
        await stream.aclose()
        for call in calls:
            if not call.done():
                call.cancel()


async def event_stream(request: web.Request, what: str,
                       relay: Callable[[EventStream], Awaitable[None]]) -> web.StreamResponse:
    """Opens the SSE response and runs `relay` on it; a failure after this point is one error event."""
    stream = EventStream()
    try:
        await stream.open(request)
        try:
            await relay(stream)
        except ConnectionResetError:
            raise
        except IngotError as error:
            log.warning("%s failed after it started: %s", what, error.message)
            await stream.send(json.dumps(error_body(request, Failure.from_error(error))))
        except Exception:
            log.exception("%s failed after it started", what)
            await stream.send(json.dumps(error_body(request, Failure.unexpected())))
        await stream.close()
    except ConnectionResetError:
        log.debug("client left %s; cancelling its generation", what)
    return stream.response

