"""POST /v1/chat/completions: validate, resolve the model, template the prompt, relay the generation."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from edge.mesh import convert
from edge.mesh import toolcalls
from edge.mesh.backends import BACKENDS
from edge.mesh.messages import GenerateResponse
from edge.shared.limits import check_token_caps
from edge.shared.settings import SETTINGS
from edge.shared.deployments import policy
from edge.openai.generation import Choices, Tagged, chat_model, event_stream, generate, opening
from edge.openai.parsing import parse_chat_request
from edge.openai.schemas import (AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice,
                          ChoiceLogprobs, ChunkChoice, Delta)
from edge.shared.sse import EventStream
from ingot.common.errors import InvalidArgument

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@dataclass
class Completion:
    """One answer under way: what every chunk repeats, and its choices."""

    model: str
    choices: Choices
    include_usage: bool = False
    logprobs: bool = False
    structured: toolcalls.Structured = field(default_factory=toolcalls.Structured)
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    # Each choice's tool calls, by choice index.
    calls: list[toolcalls.Calls] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.calls = [toolcalls.Calls(legacy=self.structured.legacy) for _ in self.choices.states]

    @property
    def tools(self) -> bool:
        return self.structured.tools is not None

    def add(self, position: int, message: GenerateResponse):
        index, state = self.choices.add(position, message)
        self.calls[index].add(message.tool_calls)
        return index, state

    def finish_reason(self, index: int) -> str:
        return self.calls[index].finish_reason(self.choices.finish_reason(index))

    def _message(self, index: int) -> AssistantMessage:
        text, calls = "".join(self.choices.states[index].text), self.calls[index]
        # An answer that is only calls has no content, as OpenAI sends it.
        return AssistantMessage(content=None if calls and not text else text, tool_calls=calls.tool_calls(),
                                function_call=calls.function_call())

    def _logprobs(self, entries) -> ChoiceLogprobs | None:
        return convert.logprobs(entries) if self.logprobs else None

    def response(self) -> ChatCompletion:
        choices = [
            Choice(index=index, message=self._message(index), finish_reason=self.finish_reason(index),
                   logprobs=self._logprobs(state.logprobs))
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
    structured = toolcalls.structured(chat)
    prompt = await backends.apply_chat_template(model.id, toolcalls.chat_messages(chat.messages),
                                                tools_json=structured.tools_json)
    generate_request = convert.chat_generate_request(chat, model.id, prompt, structured)
    if chat.user or chat.metadata:
        log.info("chat request for %s from user %r with metadata %s", model.id, chat.user, chat.metadata)
    check_token_caps(request.config_dict[SETTINGS], generate_request, prompt_param="messages")
    call = backends.generate(generate_request)
    completion = Completion(model=model.id, choices=Choices([len(prompt)], chat.choices),
                            include_usage=chat.include_usage, logprobs=bool(chat.logprobs), structured=structured)

    async def answer(messages: AsyncIterator[Tagged]) -> web.StreamResponse:
        messages = deployment.watch(messages, chat.choices)
        try:
            if chat.stream:
                messages = await opening(messages, 1)
                return await event_stream(request, f"chat stream {completion.id}",
                                          lambda stream: _relay(stream, completion, messages))
            async for position, message in messages:
                completion.add(position, message)
        except InvalidArgument as error:
            # The engine names its own field for a grammar it cannot compile; to the client it is the tools
            # or the response format the grammar was built from.
            if error.param == "constraint":
                error.param = structured.constraint_param
            raise
        return web.json_response(text=completion.response().model_dump_json())

    return await generate([call], answer)


async def _relay(stream: EventStream, completion: Completion, messages: AsyncIterator[Tagged]) -> None:
    async for position, message in messages:
        index, state = completion.add(position, message)
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
    # [DONE] only once the call has ended cleanly: a failure status after the last token still becomes an
    # error event rather than a normal finish.
    for index in range(len(completion.calls)):
        completion.finish_reason(index)
    if completion.include_usage:
        await stream.send(completion.usage_chunk())
    await stream.done()
