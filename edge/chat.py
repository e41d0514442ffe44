"""POST /v1/chat/completions: validate, resolve the model, template the prompt, relay the generation."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from edge import convert
from edge.backends import BACKENDS
from edge.limits import check_token_caps
from edge.settings import SETTINGS
from edge.deployments import policy
from edge.generation import Choices, Tagged, chat_model, event_stream, generate, opening
from edge.parsing import parse_chat_request
from edge.schemas import (AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice,
                          ChoiceLogprobs, ChunkChoice, Delta)
from edge.sse import EventStream
from ingot.inference.v1 import inference_service_pb2 as inference_pb2

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@dataclass
class Completion:
    """One answer under way: what every chunk repeats, and its choices."""

    model: str
    choices: Choices
    include_usage: bool = False
    logprobs: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _logprobs(self, entries) -> ChoiceLogprobs | None:
        return convert.logprobs(entries) if self.logprobs else None

    def response(self) -> ChatCompletion:
        choices = [
            Choice(index=index, message=AssistantMessage(content="".join(state.text)),
                   finish_reason=self.choices.finish_reason(index), logprobs=self._logprobs(state.logprobs))
            for index, state in enumerate(self.choices.states)
        ]
        return ChatCompletion(id=self.id, created=self.created, model=self.model, usage=self.choices.usage(),
                              choices=choices)

    def chunk(self, index: int, delta: Delta, finish_reason: str | None = None, logprobs=()) -> str:
        choice = ChunkChoice(index=index, delta=delta, finish_reason=finish_reason,
                             logprobs=self._logprobs(logprobs) if logprobs else None)
        return self._serialize(ChatCompletionChunk(id=self.id, created=self.created, model=self.model,
                                                   choices=[choice]))

    def usage_chunk(self) -> str:
        return self._serialize(ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=[],
                                                   usage=self.choices.usage()))

    def _serialize(self, chunk: ChatCompletionChunk) -> str:
        return chunk.model_dump_json(exclude=None if self.include_usage else {"usage"})


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await run_chat(request, parse_chat_request(await request.read()))


async def run_chat(request: web.Request, chat: ChatCompletionRequest) -> web.StreamResponse:
    """Answers a parsed chat request; the OpenAI, Azure and Azure OpenAI routes all end here."""
    backends = request.config_dict[BACKENDS]
    deployment = await policy(request, chat.model)
    chat = deployment.with_defaults(chat)
    model = await chat_model(backends, chat.model, "chat completions")
    deployment.check_prompt([m.text() or "" for m in chat.messages], param="messages")
    prompt = await backends.apply_chat_template(model.id, [convert.chat_message(m) for m in chat.messages])
    generate_request = inference_pb2.GenerateRequest(
        model=model.id, prompt_token_ids=prompt, sampling=convert.sampling_params(chat, chat.token_limit),
        n=chat.choices, execution_provider=chat.ep or "")
    if chat.ttl is not None:
        generate_request.ttl_seconds = chat.ttl
    if chat.user or chat.metadata:
        log.info("chat request for %s from user %r with metadata %s", model.id, chat.user, chat.metadata)
    check_token_caps(request.config_dict[SETTINGS], generate_request, prompt_param="messages")
    call = backends.generate(generate_request)
    completion = Completion(model=model.id, choices=Choices([len(prompt)], chat.choices),
                            include_usage=chat.include_usage, logprobs=bool(chat.logprobs))

    async def answer(messages: AsyncIterator[Tagged]) -> web.StreamResponse:
        messages = deployment.watch(messages, chat.choices)
        if chat.stream:
            messages = await opening(messages, 1)
            return await event_stream(request, f"chat stream {completion.id}",
                                      lambda stream: _relay(stream, completion, messages))
        async for position, message in messages:
            completion.choices.add(position, message)
        return web.json_response(text=completion.response().model_dump_json())

    return await generate([call], answer)


async def _relay(stream: EventStream, completion: Completion, messages: AsyncIterator[Tagged]) -> None:
    async for position, message in messages:
        index, state = completion.choices.add(position, message)
        if not state.opened:
            state.opened = True
            await stream.send(completion.chunk(index, Delta(role="assistant", content="")))
        if message.text or message.logprobs:
            await stream.send(completion.chunk(index, Delta(content=message.text), logprobs=message.logprobs))
        if state.final is not None:
            await stream.send(completion.chunk(index, Delta(), completion.choices.finish_reason(index)))
    # [DONE] only once the call has ended cleanly: a failure status after the last token still becomes an
    # error event rather than a normal finish.
    completion.choices.finish_reasons()
    if completion.include_usage:
        await stream.send(completion.usage_chunk())
    await stream.done()
