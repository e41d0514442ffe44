"""The Responses routes: OpenAI's `/v1/responses`, and Azure OpenAI's `/openai/v1/responses` (what
`OpenAI(base_url=.../openai/v1/)` calls) and `/openai/responses?api-version=` (what `AzureOpenAI` calls, even
with a deployment: the model travels in the body). Each with GET and DELETE of a stored response and its
input items."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from edge.responses.adapter import (Chat, EventStream, answer_chat, owner, parse_json_object, response_store,
                                    validate)
from edge.responses.events import ResponseBuilder
from edge.responses.items import chat_body, resolve_input, responses_param
from edge.responses.schemas import ResponsesRequest
from edge.responses.store import ResponseStore, StoredResponse
from ingot.common.errors import IngotError, Internal, InvalidArgument, NotFound

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
PREFIXES = ("/v1/responses", "/openai/v1/responses", "/openai/responses")


async def create(request: web.Request) -> web.StreamResponse:
    body = validate(ResponsesRequest, parse_json_object(await request.read()))
    store, who = response_store(request), owner(request)
    history: list[dict[str, Any]] = []
    if body.previous_response_id is not None:
        previous = await store.get(who, body.previous_response_id)
        if previous is None:
            raise InvalidArgument(f"Previous response with id '{body.previous_response_id}' not found.",
                                  param="previous_response_id", code="previous_response_not_found")
        history = previous.conversation
    items = resolve_input(body, history)

    async def respond(chat: Chat) -> web.StreamResponse:
        builder = ResponseBuilder(body, chat.model)
        if body.stream:
            return await _stream(request, builder, chat, store, who, items)
        finish = None
        async for piece in chat.pieces:
            builder.add(piece)
            finish = piece.finish_reason or finish
        _closing(builder, finish, chat)
        await _keep(store, who, builder, body, items)
        return web.json_response(builder.response())

    try:
        return await answer_chat(request, chat_body(body, items), respond)
    except InvalidArgument as error:
        # Raised in chat's terms; the client wrote a Responses request.
        param = responses_param(error.param, body)
        if param != error.param and error.param is not None:
            error.message = error.message.replace(f"'{error.param}", f"'{param}")
            error.param = param
        raise


def _closing(builder: ResponseBuilder, finish: str | None, chat: Chat) -> list[dict[str, Any]]:
    if finish is None:
        raise Internal("The inference service ended a stream without a finish reason.")
    return builder.finish(finish, *chat.usage())


async def _keep(store: ResponseStore, who: str, builder: ResponseBuilder, body: ResponsesRequest,
                items: list[dict[str, Any]]) -> None:
    if body.stores:
        response = builder.response()
        await store.put(StoredResponse(id=builder.id, owner=who, created_at=builder.created_at, response=response,
                                       input_items=list(items)))


async def _stream(request: web.Request, builder: ResponseBuilder, chat: Chat, store: ResponseStore, who: str,
                  items: list[dict[str, Any]]) -> web.StreamResponse:
    stream = EventStream()

    async def send(events: list[dict[str, Any]]) -> None:
        for event in events:
            await stream.send(json.dumps(event))

    try:
        await stream.open(request)
        try:
            await send(builder.start())
            finish = None
            async for piece in chat.pieces:
                await send(builder.add(piece))
                finish = piece.finish_reason or finish
            closing = _closing(builder, finish, chat)
            # Stored before the client hears it is complete, so a continuation sent at once finds it.
            await _keep(store, who, builder, builder.request, items)
            await send(closing)
        except ConnectionResetError:
            raise
        except IngotError as error:
            log.warning("response stream %s failed after it started: %s", builder.id, error.message)
            await send(builder.fail(error.code or error.error_type, error.message))
        except Exception:
            log.exception("response stream %s failed after it started", builder.id)
            await send(builder.fail("server_error", "The server had an error while processing your request."))
        await stream.close()
    except ConnectionResetError:
        log.debug("client left response stream %s; cancelling its generation", builder.id)
    return stream.response


async def _stored(request: web.Request) -> StoredResponse:
    response_id = request.match_info["response_id"]
    record = await response_store(request).get(owner(request), response_id)
    if record is None:
        # Another key's response is as unknown as one never made: its existence is not revealed.
        raise NotFound(f"No response found with id '{response_id}'.", param="response_id")
    return record


async def retrieve(request: web.Request) -> web.Response:
    if request.query.get("stream", "false").lower() not in ("false", "0"):
        raise InvalidArgument("Replaying a stored response as a stream is not supported by this server; retrieve "
                              "it without 'stream'.", param="stream")
    return web.json_response((await _stored(request)).response)


async def delete(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    if not await response_store(request).delete(owner(request), response_id):
        raise NotFound(f"No response found with id '{response_id}'.", param="response_id")
    return web.json_response({"id": response_id, "object": "response", "deleted": True})


def _limit(request: web.Request) -> int:
    text = request.query.get("limit", "20")
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise InvalidArgument("Invalid value for 'limit': expected an integer from 1 to 100.", param="limit")
    return int(text)


async def input_items(request: web.Request) -> web.Response:
    """The response's resolved input (the conversation before it), newest first unless order=asc."""
    limit, order, after = _limit(request), request.query.get("order", "desc"), request.query.get("after")
    if order not in ("asc", "desc"):
        raise InvalidArgument("Invalid value for 'order': expected 'asc' or 'desc'.", param="order")
    items = (await _stored(request)).input_items
    if order == "desc":
        items = items[::-1]
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidArgument(f"Invalid value for 'after': no input item '{after}' in this response.",
                                  param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return web.json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                              "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})


for _prefix in PREFIXES:
    routes.post(_prefix)(create)
    routes.get(_prefix + "/{response_id}")(retrieve)
    routes.delete(_prefix + "/{response_id}")(delete)
    routes.get(_prefix + "/{response_id}/input_items")(input_items)
