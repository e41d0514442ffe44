"""POST /v1/chat/completions: validate, resolve the model, template the prompt, relay the generation.

Whatever ends the handler (the answer is complete, the client went away and aiohttp cancelled the handler,
a write found the connection closed, an error) also ends the gRPC call, so the inference service never
keeps generating for nobody.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

import grpc
from aiohttp import web

from edge import convert
from edge.backends import BACKENDS, translated
from edge.errors import Failure, error_body
from edge.parsing import parse_chat_request
from edge.schemas import (AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, Delta,
                          Usage)
from edge.sse import EventStream
from ingot.common.errors import IngotError, Internal, InvalidArgument
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as inference_pb2

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# A model the registry did not classify is left to the inference service to accept or refuse.
_CHAT_TASKS = (common_pb2.MODEL_TASK_CHAT_COMPLETION, common_pb2.MODEL_TASK_UNSPECIFIED)


@dataclass
class Completion:
    """One answer under way: what every chunk repeats, and what the final usage is counted from."""

    model: str
    prompt_tokens: int
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    text: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    final: inference_pb2.GenerateResponse | None = None

    def add(self, message: inference_pb2.GenerateResponse) -> None:
        self.text.append(message.text)
        self.completion_tokens += len(message.token_ids)
        if message.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED:
            self.final = message

    def finish_reason(self) -> str:
        if self.final is None:
            raise Internal("The inference service ended the stream without a finish reason.")
        reason = convert.FINISH_REASONS.get(self.final.finish_reason)
        if reason is None:
            raise Internal(f"The inference service sent an unknown finish reason ({self.final.finish_reason}).")
        return reason

    def usage(self) -> Usage:
        assert self.final is not None
        return convert.usage(self.final, self.prompt_tokens, self.completion_tokens)

    def response(self) -> ChatCompletion:
        reason = self.finish_reason()
        return ChatCompletion(
            id=self.id, created=self.created, model=self.model, usage=self.usage(),
            choices=[Choice(message=AssistantMessage(content="".join(self.text)), finish_reason=reason)],
        )

    def chunk(self, delta: Delta | None = None, finish_reason: str | None = None) -> str:
        choices = [] if delta is None else [ChunkChoice(delta=delta, finish_reason=finish_reason)]
        usage = self.usage() if delta is None else None
        chunk = ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)
        return chunk.model_dump_json(exclude=None if self.include_usage else {"usage"})


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    chat = parse_chat_request(await request.read())
    backends = request.config_dict[BACKENDS]
    model = await backends.resolve_model(chat.model)
    if model.task not in _CHAT_TASKS:
        task = convert.TASKS.get(model.task, f"task {model.task}")
        raise InvalidArgument(f"Model '{chat.model}' is a {task} model; chat completions need a "
                              "chat-completion model.", param="model")
    prompt = await backends.apply_chat_template(model.id, [convert.chat_message(m) for m in chat.messages])
    call = backends.generate(inference_pb2.GenerateRequest(
        model=model.id, prompt_token_ids=prompt, sampling=convert.sampling_params(chat)))
    completion = Completion(model=model.id, prompt_tokens=len(prompt), include_usage=chat.include_usage)
    try:
        async with aclosing(_messages(call)) as messages:
            if chat.stream:
                return await _stream(request, messages, completion)
            async for message in messages:
                completion.add(message)
            return web.json_response(text=completion.response().model_dump_json())
    finally:
        if not call.done():
            call.cancel()


async def _messages(call: grpc.aio.UnaryStreamCall) -> AsyncIterator[inference_pb2.GenerateResponse]:
    with translated("inference"):
        async for message in call:
            yield message


async def _stream(request: web.Request, messages: AsyncIterator[inference_pb2.GenerateResponse],
                  completion: Completion) -> web.StreamResponse:
    # Until the first message arrives nothing is sent, so a failure here (unknown model, service down,
    # prompt too long) still answers with its real status and a JSON body.
    first = await anext(messages, None)
    if first is None:
        raise Internal("The inference service ended the stream without a finish reason.")
    stream = EventStream()
    try:
        await stream.open(request)
        await stream.send(completion.chunk(Delta(role="assistant", content="")))
        try:
            await _relay(stream, completion, first, messages)
        except ConnectionResetError:
            raise
        except IngotError as error:
            log.warning("chat stream %s failed after it started: %s", completion.id, error.message)
            await stream.send(json.dumps(error_body(request, Failure.from_error(error))))
        except Exception:
            log.exception("chat stream %s failed after it started", completion.id)
            await stream.send(json.dumps(error_body(request, Failure.unexpected())))
        await stream.close()
    except ConnectionResetError:
        log.debug("client left chat stream %s; cancelling its generation", completion.id)
    return stream.response


async def _relay(stream: EventStream, completion: Completion, first: inference_pb2.GenerateResponse,
                 rest: AsyncIterator[inference_pb2.GenerateResponse]) -> None:
    message: inference_pb2.GenerateResponse | None = first
    while message is not None:
        completion.add(message)
        if message.text:
            await stream.send(completion.chunk(Delta(content=message.text)))
        message = await anext(rest, None)
    # Sent once the call has ended cleanly, so a failure status after the last token still becomes an
    # error event rather than a normal finish.
    await stream.send(completion.chunk(Delta(), completion.finish_reason()))
    if completion.include_usage:
        await stream.send(completion.chunk())
    await stream.done()
