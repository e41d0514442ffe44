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

from edge import convert, toolcalls
from edge.backends import BACKENDS, translated
from edge.errors import Failure, error_body
from edge.parsing import parse_chat_request
from edge.schemas import (AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChoiceLogprobs,
                          ChunkChoice, Delta, Usage)
from edge.sse import EventStream
from ingot.common.errors import IngotError, Internal, InvalidArgument
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as inference_pb2

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# A model the registry did not classify is left to the inference service to accept or refuse.
_CHAT_TASKS = (common_pb2.MODEL_TASK_CHAT_COMPLETION, common_pb2.MODEL_TASK_UNSPECIFIED)


@dataclass
class ChoiceState:
    text: list[str] = field(default_factory=list)
    logprobs: list[inference_pb2.TokenLogprob] = field(default_factory=list)
    calls: toolcalls.Calls = field(default_factory=toolcalls.Calls)
    final: inference_pb2.GenerateResponse | None = None
    # Streaming: whether this choice's first chunk (the one carrying the role) went out.
    opened: bool = False


@dataclass
class Completion:
    """One answer under way, with one state per choice: what every chunk repeats, and what the final
    usage is counted from."""

    model: str
    prompt_tokens: int
    n: int = 1
    include_usage: bool = False
    logprobs: bool = False
    structured: toolcalls.Structured = field(default_factory=toolcalls.Structured)
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    completion_tokens: int = 0
    choices: list[ChoiceState] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.choices = [ChoiceState(calls=toolcalls.Calls(legacy=self.structured.legacy)) for _ in range(self.n)]

    @property
    def tools(self) -> bool:
        return self.structured.tools is not None

    def add(self, message: inference_pb2.GenerateResponse) -> ChoiceState:
        if message.index >= self.n:
            raise Internal(f"The inference service sent choice {message.index} of {self.n}.")
        state = self.choices[message.index]
        state.text.append(message.text)
        state.logprobs.extend(message.logprobs)
        state.calls.add(message.tool_calls)
        self.completion_tokens += len(message.token_ids)
        if message.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED:
            state.final = message
        return state

    def finish_reason(self, index: int) -> str:
        final = self.choices[index].final
        if final is None:
            raise Internal("The inference service ended the stream without a finish reason.")
        reason = convert.FINISH_REASONS.get(final.finish_reason)
        if reason is None:
            raise Internal(f"The inference service sent an unknown finish reason ({final.finish_reason}).")
        return self.choices[index].calls.finish_reason(reason)

    def usage(self) -> Usage:
        finals = [state.final for state in self.choices]
        if all(final is not None and final.HasField("usage") for final in finals):
            completion = sum(final.usage.completion_tokens for final in finals)
        else:
            completion = self.completion_tokens
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=completion,
                     total_tokens=self.prompt_tokens + completion)

    def _logprobs(self, entries) -> ChoiceLogprobs | None:
        return convert.logprobs(entries) if self.logprobs else None

    def response(self) -> ChatCompletion:
        choices = [
            Choice(index=index, message=self._message(state), finish_reason=self.finish_reason(index),
                   logprobs=self._logprobs(state.logprobs))
            for index, state in enumerate(self.choices)
        ]
        return ChatCompletion(id=self.id, created=self.created, model=self.model, usage=self.usage(), choices=choices)

    @staticmethod
    def _message(state: ChoiceState) -> AssistantMessage:
        text = "".join(state.text)
        # An answer that is only calls has no content, as OpenAI sends it.
        return AssistantMessage(content=None if state.calls and not text else text,
                                tool_calls=state.calls.tool_calls(), function_call=state.calls.function_call())

    def chunk(self, index: int, delta: Delta, finish_reason: str | None = None, logprobs=()) -> str:
        choice = ChunkChoice(index=index, delta=delta, finish_reason=finish_reason,
                             logprobs=self._logprobs(logprobs) if logprobs else None)
        return self._serialize(ChatCompletionChunk(id=self.id, created=self.created, model=self.model,
                                                   choices=[choice]))

    def usage_chunk(self) -> str:
        return self._serialize(ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=[],
                                                   usage=self.usage()))

    def _serialize(self, chunk: ChatCompletionChunk) -> str:
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
    structured = toolcalls.structured(chat)
    prompt = await backends.apply_chat_template(model.id, toolcalls.chat_messages(chat.messages),
                                                tools_json=structured.tools_json)
    generate = inference_pb2.GenerateRequest(
        model=model.id, prompt_token_ids=prompt, sampling=convert.sampling_params(chat, chat.token_limit),
        n=chat.choices, execution_provider=chat.ep or "", tools=structured.tools, constraint=structured.constraint)
    if chat.ttl is not None:
        generate.ttl_seconds = chat.ttl
    if chat.user or chat.metadata:
        log.info("chat request for %s from user %r with metadata %s", model.id, chat.user, chat.metadata)
    call = backends.generate(generate)
    completion = Completion(model=model.id, prompt_tokens=len(prompt), n=chat.choices,
                            include_usage=chat.include_usage, logprobs=bool(chat.logprobs), structured=structured)
    try:
        async with aclosing(_messages(call, structured.constraint_param)) as messages:
            if chat.stream:
                return await _stream(request, messages, completion)
            async for message in messages:
                completion.add(message)
            return web.json_response(text=completion.response().model_dump_json())
    finally:
        if not call.done():
            call.cancel()


async def _messages(call: grpc.aio.UnaryStreamCall,
                    constraint_param: str) -> AsyncIterator[inference_pb2.GenerateResponse]:
    try:
        with translated("inference"):
            async for message in call:
                yield message
    except InvalidArgument as error:
        # The engine names its own field for a grammar it cannot compile; to the client it is the tools or
        # the response format the grammar was built from.
        if error.param == "constraint":
            error.param = constraint_param
        raise


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
        state = completion.add(message)
        index = message.index
        if not state.opened and not completion.tools:
            state.opened = True
            await stream.send(completion.chunk(index, Delta(role="assistant", content="")))
        if message.text or message.logprobs or message.tool_calls:
            delta = Delta(content=message.text if message.text or not message.tool_calls else None)
            if message.tool_calls:
                calls = toolcalls.delta_fields(message.tool_calls, completion.structured.legacy)
                delta = delta.model_copy(update=calls)
            if not state.opened:
                # With tools the role waits for the first text or call, so that an answer that is only calls
                # never shows an empty content, as OpenAI streams it.
                state.opened = True
                delta = delta.model_copy(update={"role": "assistant"})
            await stream.send(completion.chunk(index, delta, logprobs=message.logprobs))
        if state.final is not None:
            if not state.opened:
                state.opened = True
                await stream.send(completion.chunk(index, Delta(role="assistant", content="")))
            await stream.send(completion.chunk(index, Delta(), completion.finish_reason(index)))
        message = await anext(rest, None)
    # [DONE] only once the call has ended cleanly: a failure status after the last token still becomes an
    # error event rather than a normal finish.
    for index, state in enumerate(completion.choices):
        completion.finish_reason(index)
    if completion.include_usage:
        await stream.send(completion.usage_chunk())
    await stream.done()
