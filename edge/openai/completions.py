"""POST /v1/completions: OpenAI's legacy text completions.

Each prompt of a batch becomes one Generate call with n choices, all run at once; prompt p's choice i is
choice p * n + i of the answer, as OpenAI numbers a batch. A string prompt is continued as written, as
OpenAI, vLLM and llama.cpp's server do, so that clients that score or continue raw text get what they sent.
Databricks' completions task on a chat model wraps it in the chat template as one user message instead;
its routes ask for that default (`template_by_default`), and `use_raw_prompt` overrides either default.
Token-id prompts are always raw. With a `suffix`, the prompt is rewritten into the model's
fill-in-the-middle form, where the model has one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from edge.mesh import convert
from edge.mesh.backends import BACKENDS, Backends
from edge.mesh.messages import GenerateRequest, ModelInfo
from edge.shared.limits import check_token_caps
from edge.shared.settings import SETTINGS
from edge.shared.deployments import policy
from edge.openai.generation import Choices, ChoiceState, Tagged, chat_model, event_stream, generate, opening
from edge.openai.parsing import parse_completion_request
from edge.openai.schemas import CompletionChoice, CompletionLogprobs, CompletionRequest, TextCompletion
from edge.shared.sse import EventStream
from ingot.common import contextlength
from ingot.common.errors import IngotError, InvalidArgument

routes = web.RouteTableDef()

# Fill-in-the-middle markers as StarCoder-family (SmolLM's ancestors among them) and Qwen-coder-family
# tokenizers spell them; a model whose vocabulary has one family as special tokens can complete a middle.
FIM_MARKERS = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
)


@dataclass(frozen=True)
class Prompt:
    token_ids: list[int]
    # What `echo` returns: the text that was tokenized (the raw prompt, the rendered template, or the text
    # of the token ids).
    text: str = ""
    # The text of the first token, which an echo with logprobs lists without a logprob.
    first_token: str = ""


@contextmanager
def _about_the_prompt() -> Iterator[None]:
    # The tokenizer and inference services speak of `messages` (the templated prompt) and `token_ids`; to
    # this route's client both are its `prompt`.
    try:
        yield
    except IngotError as error:
        if error.param == "messages" or (error.param or "").startswith("token_ids"):
            error.param = "prompt"
        raise


async def fim_markers(backends: Backends, model: ModelInfo) -> tuple[int, int, int]:
    """The ids of the model's fill-in-the-middle tokens, or a 400 naming `suffix` where it has none."""
    families = await asyncio.gather(*(
        asyncio.gather(*(backends.encode(model.id, marker, add_special_tokens=False) for marker in family))
        for family in FIM_MARKERS))
    for encoded in families:
        if all(len(ids) == 1 for ids in encoded):
            prefix, suffix, middle = (ids[0] for ids in encoded)
            # A marker that is one ordinary token would survive skip_special_tokens; special ones vanish.
            if not await backends.decode(model.id, [prefix, suffix, middle], skip_special_tokens=True):
                return prefix, suffix, middle
    raise InvalidArgument(f"Invalid value for 'suffix': the model '{model.id}' has no fill-in-the-middle tokens, "
                          "so it cannot complete text that comes before a suffix.", param="suffix")


async def prepare(backends: Backends, model: ModelInfo, body: CompletionRequest,
                  prompt: str | list[int], fim: tuple[int, int, int] | None, *,
                  template_by_default: bool = False) -> Prompt:
    if fim is not None:
        before = prompt if isinstance(prompt, list) else await backends.encode(model.id, prompt,
                                                                               add_special_tokens=False)
        after = await backends.encode(model.id, body.suffix or "", add_special_tokens=False)
        prefix, suffix, middle = fim
        return Prompt([prefix, *before, suffix, *after, middle])
    if isinstance(prompt, list):
        token_ids = prompt
        text = await backends.decode(model.id, token_ids) if body.echo else ""
    elif body.use_raw_prompt if body.use_raw_prompt is not None else not template_by_default:
        token_ids = await backends.encode(model.id, prompt, add_special_tokens=True)
        text = prompt
    else:
        rendered = await backends.render_chat(model.id, [convert.user_message(prompt)])
        token_ids, text = list(rendered.token_ids), rendered.prompt
    if not token_ids:
        raise InvalidArgument("Invalid value for 'prompt': it encodes to no tokens, so there is nothing to "
                              "complete.", param="prompt")
    first = await backends.decode(model.id, token_ids[:1]) if body.echo and body.logprobs is not None else ""
    return Prompt(token_ids, text, first)


def fit(prompt_tokens: int, requested: int | None, context_length: int, *, truncate: bool,
        where: str = "the prompt") -> int | None:
    """The max_tokens to ask for: what was requested, clipped to what fits when truncating. Overflow is a
    400 here, before any prompt of a batch starts."""
    if not context_length:  # the registry does not know it: the inference service decides
        return requested
    room = contextlength.room(prompt_tokens, context_length, where=where, param="prompt",
                              advice=", so no completion fits. Shorten the prompt.")
    if requested is None or requested <= room:
        return requested
    if truncate:
        return room
    raise contextlength.too_long(prompt_tokens, requested, context_length, where=where,
                                 advice="Reduce the prompt or max_tokens, or set error_behavior to 'truncate'.")


@dataclass
class Answer:
    """One completions answer under way: what every chunk repeats, and its choices."""

    body: CompletionRequest
    model: str
    prompts: list[Prompt]
    choices: Choices
    id: str = field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    # Streaming: each choice's logprobs so far, so text offsets run on across chunks.
    builders: dict[int, convert.LegacyLogprobs] = field(default_factory=dict)

    def prompt_of(self, index: int) -> Prompt:
        return self.prompts[index // self.choices.n]

    def _builder(self, index: int) -> convert.LegacyLogprobs:
        return self.builders.setdefault(index, convert.LegacyLogprobs())

    def echo_logprobs(self, index: int, state: ChoiceState) -> CompletionLogprobs | None:
        if self.body.logprobs is None:
            return None
        return self._builder(index).add(state.prompt_logprobs, unscored_first=self.prompt_of(index).first_token)

    def logprobs(self, index: int, entries) -> CompletionLogprobs | None:
        return self._builder(index).add(entries) if self.body.logprobs is not None else None

    def response(self) -> TextCompletion:
        choices = []
        for index, state in enumerate(self.choices.states):
            echo = self.prompt_of(index).text if self.body.echo else ""
            logprobs = None
            if self.body.logprobs is not None:
                builder = convert.LegacyLogprobs()
                first = self.prompt_of(index).first_token if self.body.echo else None
                logprobs = builder.add([*state.prompt_logprobs, *state.logprobs], unscored_first=first)
            choices.append(CompletionChoice(index=index, text=echo + "".join(state.text), logprobs=logprobs,
                                            finish_reason=self.choices.finish_reason(index)))
        return TextCompletion(id=self.id, created=self.created, model=self.model, choices=choices,
                              usage=self.choices.usage())

    def chunk(self, index: int, text: str, logprobs: CompletionLogprobs | None = None,
              finish_reason: str | None = None) -> str:
        choice = CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=finish_reason)
        return self._serialize(TextCompletion(id=self.id, created=self.created, model=self.model,
                                              choices=[choice]))

    def usage_chunk(self) -> str:
        return self._serialize(TextCompletion(id=self.id, created=self.created, model=self.model, choices=[],
                                              usage=self.choices.usage()))

    def _serialize(self, chunk: TextCompletion) -> str:
        # As chat: "usage": null on every chunk when include_usage is on, and no key otherwise.
        return chunk.model_dump_json(exclude=None if self.body.include_usage else {"usage"})


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    return await run_completions(request, parse_completion_request(await request.read()))


async def run_completions(request: web.Request, body: CompletionRequest, *,
                          template_by_default: bool = False) -> web.StreamResponse:
    """Answers a parsed completions request; the OpenAI, Azure, Azure OpenAI and Databricks routes all end
    here. `template_by_default`: a string prompt goes through the chat template unless use_raw_prompt is true
    (Databricks' completions task); otherwise it is raw unless use_raw_prompt is false."""
    backends = request.config_dict[BACKENDS]
    deployment = await policy(request, body.model)
    body = deployment.with_defaults(body)
    deployment.check_prompt([p for p in body.prompt if isinstance(p, str)], param="prompt")
    with _about_the_prompt():
        model = await chat_model(backends, body.model, "completions")
        fim = await fim_markers(backends, model) if body.suffix else None
        prompts = list(await asyncio.gather(*(prepare(backends, model, body, prompt, fim,
                                                              template_by_default=template_by_default)
                                                      for prompt in body.prompt)))
        calls = []
        for position, prompt in enumerate(prompts):
            where = "the prompt" if len(prompts) == 1 else f"prompt {position}"
            max_tokens = fit(len(prompt.token_ids), body.max_tokens, model.context_length, truncate=body.truncate,
                             where=where)
            calls.append(_generate_request(body, model.id, prompt, max_tokens))
            check_token_caps(request.config_dict[SETTINGS], calls[-1], prompt_param="prompt")
        answer = Answer(body=body, model=model.id, prompts=prompts,
                        choices=Choices([len(prompt.token_ids) for prompt in prompts], body.choices))

        async def reply(messages: AsyncIterator[Tagged]) -> web.StreamResponse:
            messages = deployment.watch(messages, len(calls) * body.choices)
            if body.stream:
                messages = await opening(messages, len(calls))
                return await event_stream(request, f"completions stream {answer.id}",
                                          lambda stream: _relay(stream, answer, messages))
            async for position, message in messages:
                answer.choices.add(position, message)
            return web.json_response(text=answer.response().model_dump_json())

        return await generate([backends.generate(call) for call in calls], reply)


def _generate_request(body: CompletionRequest, model: str, prompt: Prompt,
                      max_tokens: int | None) -> GenerateRequest:
    return convert.completion_generate_request(body, model, prompt.token_ids, max_tokens)


async def _relay(stream: EventStream, answer: Answer, messages: AsyncIterator[Tagged]) -> None:
    async for position, message in messages:
        index, state = answer.choices.add(position, message)
        if not state.opened:
            state.opened = True
            if answer.body.echo:
                await stream.send(answer.chunk(index, answer.prompt_of(index).text, answer.echo_logprobs(index, state)))
        if message.text or message.logprobs:
            await stream.send(answer.chunk(index, message.text, answer.logprobs(index, message.logprobs)))
        if state.final is not None:
            await stream.send(answer.chunk(index, "", finish_reason=answer.choices.finish_reason(index)))
    # [DONE] only once every call ended cleanly, as chat does.
    answer.choices.finish_reasons()
    if answer.body.include_usage:
        await stream.send(answer.usage_chunk())
    await stream.done()
