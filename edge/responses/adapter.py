"""The Responses surface's one door into the rest of the edge: request parsing, the caller's identity, the
store's lifetime, and a chat request answered by the chat pipeline as a stream of plain pieces.

Everything the package needs from the edge (and every protobuf it touches) goes through here, so moving the
edge to another layout means rewriting this module alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import jwt
from aiohttp import web

from edge.mesh import convert, toolcalls
from edge.mesh.backends import BACKENDS
from edge.mesh.messages import Tagged, is_final
from edge.openai.generation import Choices, chat_model, generate, opening
from edge.openai.parsing import parse_chat_request, parse_json_object, validate
from edge.openai.schemas import NAME_PATTERN, UINT32_MAX, RequestModel
from edge.responses.pieces import CallDelta, Piece
from edge.responses.store import RedisStore, ResponseStore, SQLiteStore
from edge.shared.auth import AUTHENTICATOR
from edge.shared.deployments import policy
from edge.shared.limits import check_token_caps
from edge.shared.settings import SETTINGS, EdgeSettings
from edge.shared.sse import EventStream
from ingot.common.errors import InvalidArgument

__all__ = ["NAME_PATTERN", "UINT32_MAX", "RequestModel", "parse_json_object", "validate", "EventStream", "Chat",
           "answer_chat", "owner", "response_store", "store_lifetime"]

T = TypeVar("T")
STORE = web.AppKey("responses_store", ResponseStore)


def owner(request: web.Request) -> str:
    """Whom a stored response belongs to: a digest of the API key, or a bearer token's issuer and subject (a
    token is renewed, its subject stays). An edge without auth has one owner: anyone may claim any key."""
    if not request.config_dict[AUTHENTICATOR].enabled:
        return ""
    credential = request.headers.get("api-key", "").strip()
    if not credential:
        _, _, credential = request.headers.get("Authorization", "").partition(" ")
        credential = credential.strip()
        if credential.count(".") == 2:
            try:
                # The auth middleware has verified the token already; only its claims are read here.
                claims = jwt.decode(credential, options={"verify_signature": False})
                return "jwt:" + hashlib.sha256(f"{claims.get('iss')}\n{claims.get('sub')}".encode()).hexdigest()
            except jwt.PyJWTError:
                pass
    return "key:" + hashlib.sha256(credential.encode()).hexdigest()


def _store_for(settings: EdgeSettings) -> ResponseStore:
    if settings.redis_url:
        return RedisStore(settings.redis_url, settings.responses_ttl, settings.responses_max)
    path = settings.responses_db or settings.home / "responses.sqlite3"
    return SQLiteStore(path, settings.responses_ttl, settings.responses_max)


async def store_lifetime(app: web.Application) -> AsyncIterator[None]:
    """The application's response store, opened (lazily) with it and closed with it."""
    store = _store_for(app[SETTINGS])
    app[STORE] = store
    try:
        yield
    finally:
        await store.close()


def response_store(request: web.Request) -> ResponseStore:
    return request.config_dict[STORE]




@dataclass
class Chat:
    """A chat answer under way: its model, its pieces as they come, and the tokens counted so far."""

    model: str
    pieces: AsyncIterator[Piece]
    _choices: Choices

    def usage(self) -> tuple[int, int]:
        usage = self._choices.usage()
        return usage.prompt_tokens, usage.completion_tokens


async def _pieces(messages: AsyncIterator[Tagged], choices: Choices) -> AsyncIterator[Piece]:
    async for position, message in messages:
        choices.add(position, message)
        finish = choices.finish_reason(0) if is_final(message) else None
        yield Piece(text=message.text, finish_reason=finish,
                    calls=[CallDelta(delta.index, delta.id, delta.name, delta.arguments)
                           for delta in message.tool_calls])


async def answer_chat(request: web.Request, body: dict, respond: Callable[[Chat], Awaitable[T]]) -> T:
    """Answers the chat completions request `body` as the chat route does (deployment policy, the model's
    template, tools and response format by constrained decoding, the operator's caps) and hands the answer
    to `respond`. A failure up to the first generated message raises with its real status; the generation
    ends whenever `respond` returns or fails."""
    chat = parse_chat_request(json.dumps(body).encode())
    backends = request.config_dict[BACKENDS]
    deployment = await policy(request, chat.model)
    chat = deployment.with_defaults(chat)
    model = await chat_model(backends, chat.model, "responses")
    deployment.check_prompt([message.text() or "" for message in chat.messages], param="input")
    structured = toolcalls.structured(chat)
    prompt = await backends.apply_chat_template(model.id, toolcalls.chat_messages(chat.messages),
                                                tools_json=structured.tools_json)
    generate_request = convert.chat_generate_request(chat, model.id, prompt, structured)
    check_token_caps(request.config_dict[SETTINGS], generate_request, prompt_param="input")
    choices = Choices([len(prompt)], 1)

    async def run(messages: AsyncIterator[Tagged]) -> T:
        try:
            messages = await opening(deployment.watch(messages, 1), 1)
            return await respond(Chat(model.id, _pieces(messages, choices), choices))
        except InvalidArgument as error:
            # The engine names its own field for a grammar it cannot compile; the client sent tools or a format.
            if error.param == "constraint":
                error.param = structured.constraint_param
            raise

    return await generate([backends.generate(generate_request)], run)
