"""The tokenizer's routes: Foundry Local's token count for a chat request, and vLLM's /tokenize and
/detokenize. All are served by the tokenizer service; no model runs.
"""

from __future__ import annotations

from aiohttp import web

from edge.mesh import toolcalls
from edge.mesh.backends import BACKENDS
from edge.openai.parsing import parse_chat_request, parse_detokenize_request, parse_tokenize_request
from edge.openai.schemas import Detokenized, TokenCount, Tokenized
from ingot.common.errors import IngotError

routes = web.RouteTableDef()


@routes.post("/v1/chat/completions/tokenizer/encode/count")
async def count(request: web.Request) -> web.Response:
    # The body is a chat completions request (Foundry Local's SDKs send the one they would run), checked
    # as strictly as chat checks it, and counted exactly as chat templates it: the count is the
    # prompt_tokens that running it reports.
    chat = parse_chat_request(await request.read())
    backends = request.config_dict[BACKENDS]
    model = await backends.resolve_model(chat.model)
    tokens = await backends.count_chat_tokens(model.id, toolcalls.chat_messages(chat.messages),
                                              tools_json=toolcalls.structured(chat).tools_json)
    return web.json_response(text=TokenCount(tokenCount=tokens).model_dump_json())


@routes.post("/tokenize")
async def tokenize(request: web.Request) -> web.Response:
    body = parse_tokenize_request(await request.read())
    backends = request.config_dict[BACKENDS]
    model = await backends.resolve_model(body.model)
    if body.messages is None:
        add_special_tokens = body.add_special_tokens if body.add_special_tokens is not None else True
        tokens = await backends.encode(model.id, body.prompt or "", add_special_tokens=add_special_tokens)
    else:
        rendered = await backends.render_chat(
            model.id, toolcalls.chat_messages(body.messages),
            add_generation_prompt=body.add_generation_prompt,
            continue_final_message=bool(body.continue_final_message))
        tokens = list(rendered.token_ids)
    return web.json_response(text=Tokenized(count=len(tokens), max_model_len=model.context_length,
                                            tokens=tokens).model_dump_json())


@routes.post("/detokenize")
async def detokenize(request: web.Request) -> web.Response:
    body = parse_detokenize_request(await request.read())
    backends = request.config_dict[BACKENDS]
    model = await backends.resolve_model(body.model)
    try:
        text = await backends.decode(model.id, body.tokens)
    except IngotError as error:
        # The tokenizer service names its own field, token_ids[i]; to this client it is tokens[i].
        if error.param and error.param.startswith("token_ids"):
            error.param = "tokens" + error.param.removeprefix("token_ids")
        raise
    return web.json_response(text=Detokenized(prompt=text).model_dump_json())
