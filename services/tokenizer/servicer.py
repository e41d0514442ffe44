"""TokenizerService: names resolved by the registry, tokenizers loaded once per model folder, and every
piece of CPU work (loading, rendering, encoding) on a worker thread so a long prompt never stalls the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import grpc

from ingot.common.errors import Internal, InvalidArgument
from ingot.common.v1 import common_pb2
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from ingot.tokenizer.v1 import tokenizer_service_pb2 as pb
from ingot.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from services.tokenizer import chat_template, modelfiles, tools as tool_prompts
from services.tokenizer.messages import parse_tools, template_messages
from services.tokenizer.modelfiles import ModelTokenizer
from ingot.common.resolver import ModelResolver

log = logging.getLogger(__name__)

# Far more models than one machine serves at once; the bound only keeps a long-lived process from
# holding every tokenizer it has ever been asked about.
MAX_LOADED_TOKENIZERS = 32


class TokenizerCache:
    """Loaded tokenizers by model folder, least recently used dropped first.

    The key holds the manifest's time too, so a model deleted and downloaded again into the same folder
    is read afresh. Concurrent first calls for one model share a single load.
    """

    def __init__(self, max_size: int = MAX_LOADED_TOKENIZERS) -> None:
        self._max_size = max_size
        self._loaded: OrderedDict[tuple[str, int], asyncio.Future[ModelTokenizer]] = OrderedDict()

    async def get(self, model: registry_pb.ModelInfo) -> ModelTokenizer:
        key = (model.path, model.created)
        future = self._loaded.get(key)
        if future is None:
            future = asyncio.ensure_future(self._load(model))
            self._loaded[key] = future
            while len(self._loaded) > self._max_size:
                self._loaded.popitem(last=False)
        else:
            self._loaded.move_to_end(key)
        try:
            # shield: one caller going away must not cancel the load the others wait on.
            return await asyncio.shield(future)
        except Exception:
            if self._loaded.get(key) is future:
                del self._loaded[key]
            raise

    @staticmethod
    async def _load(model: registry_pb.ModelInfo) -> ModelTokenizer:
        try:
            return await asyncio.to_thread(modelfiles.load, Path(model.path))
        except modelfiles.ModelFilesError as exc:
            log.warning("model %s in %s: %s", model.id, model.path, exc)
            raise Internal(f"The model '{model.id}' has no usable tokenizer: {exc}") from None


def _render_and_encode(model_name: str, tokenizer: ModelTokenizer, messages: Sequence[common_pb2.ChatMessage],
                       tools_json: str, continue_final_message: bool,
                       add_generation_prompt: bool | None) -> tuple[str, list[int]]:
    chat = template_messages(messages)
    tools = parse_tools(tools_json)
    source = tokenizer.template_source(with_tools=tools is not None)
    if source is None:
        raise InvalidArgument(f"The model '{model_name}' has no chat template.", param="model")
    try:
        template = chat_template.compile_template(source)
    except chat_template.TemplateCompileError as exc:
        raise Internal(f"The chat template of '{model_name}' is not valid Jinja: {exc}") from None
    if tool_prompts.needs_inlining(chat, tools) and not tool_prompts.renders_tools(template):
        chat, tools = tool_prompts.inline(chat, tools), None
    try:
        prompt = chat_template.render(template, chat, tools=tools, special_tokens=tokenizer.special_tokens,
                                      continue_final_message=continue_final_message,
                                      add_generation_prompt=add_generation_prompt)
    except chat_template.TemplateRenderError as exc:
        raise InvalidArgument(str(exc), param="messages") from None
    # The template wrote the special tokens it wants (BOS included); transformers encodes templated text
    # without adding them again, and so do we.
    return prompt, tokenizer.tokenizer.encode(prompt, add_special_tokens=False).ids


def _encode(tokenizer: ModelTokenizer, text: str, add_special_tokens: bool) -> list[int]:
    return tokenizer.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids


def _decode(tokenizer: ModelTokenizer, token_ids: Sequence[int], skip_special_tokens: bool) -> str:
    vocab_size = tokenizer.vocab_size
    for i, token_id in enumerate(token_ids):
        if token_id >= vocab_size:
            raise InvalidArgument(f"token_ids[{i}] is {token_id}, outside the vocabulary of {vocab_size} tokens.",
                                  param=f"token_ids[{i}]")
    return tokenizer.tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)


class TokenizerServicer(pb_grpc.TokenizerServiceServicer):
    def __init__(self, resolver: ModelResolver, cache: TokenizerCache | None = None) -> None:
        self._resolver = resolver
        self._cache = cache or TokenizerCache()

    async def _tokenizer(self, name: str) -> tuple[registry_pb.ModelInfo, ModelTokenizer]:
        model = await self._resolver.resolve(name)
        return model, await self._cache.get(model)

    async def _apply(self, name: str, messages: Sequence[common_pb2.ChatMessage], tools_json: str,
                     continue_final_message: bool, add_generation_prompt: bool | None = None) -> tuple[str, list[int]]:
        model, tokenizer = await self._tokenizer(name)
        if model.task != common_pb2.MODEL_TASK_CHAT_COMPLETION:
            raise InvalidArgument(f"The model '{name}' is not a chat model, so it has no chat template.",
                                  param="model")
        return await asyncio.to_thread(_render_and_encode, name, tokenizer, messages, tools_json,
                                       continue_final_message, add_generation_prompt)

    async def ApplyChatTemplate(self, request: pb.ApplyChatTemplateRequest,
                                context: grpc.aio.ServicerContext) -> pb.ApplyChatTemplateResponse:
        add_generation_prompt = (request.add_generation_prompt if request.HasField("add_generation_prompt")
                                 else None)
        if add_generation_prompt and request.continue_final_message:
            raise InvalidArgument("add_generation_prompt and continue_final_message cannot both be set.",
                                  param="add_generation_prompt")
        prompt, token_ids = await self._apply(request.model, request.messages, request.tools_json,
                                              request.continue_final_message, add_generation_prompt)
        return pb.ApplyChatTemplateResponse(prompt=prompt, token_ids=token_ids)

    async def Encode(self, request: pb.EncodeRequest, context: grpc.aio.ServicerContext) -> pb.EncodeResponse:
        _, tokenizer = await self._tokenizer(request.model)
        token_ids = await asyncio.to_thread(_encode, tokenizer, request.text, request.add_special_tokens)
        return pb.EncodeResponse(token_ids=token_ids)

    async def Decode(self, request: pb.DecodeRequest, context: grpc.aio.ServicerContext) -> pb.DecodeResponse:
        _, tokenizer = await self._tokenizer(request.model)
        text = await asyncio.to_thread(_decode, tokenizer, request.token_ids, request.skip_special_tokens)
        return pb.DecodeResponse(text=text)

    async def CountTokens(self, request: pb.CountTokensRequest,
                          context: grpc.aio.ServicerContext) -> pb.CountTokensResponse:
        which = request.WhichOneof("input")
        if which == "conversation":
            conversation = request.conversation
            _, token_ids = await self._apply(request.model, conversation.messages, conversation.tools_json, False)
        elif which == "text":
            _, tokenizer = await self._tokenizer(request.model)
            # The text as given, without the markers Encode adds only when asked: what a prompt of it costs.
            token_ids = await asyncio.to_thread(_encode, tokenizer, request.text, False)
        else:
            raise InvalidArgument("Give either a text or a conversation to count.", param="input")
        return pb.CountTokensResponse(token_count=len(token_ids))
