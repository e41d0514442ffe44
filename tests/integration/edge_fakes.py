"""Fake tokenizer, registry and inference services on real grpc.aio servers, and the edge in front of them.

The `mesh` and `client` fixtures in conftest.py put them together for the edge's integration tests. The fakes run inside the common
ServiceHost (error interceptor, health), so errors cross the wire exactly as the real services send them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from edge.shared.settings import EdgeSettings
from ingot.common.errors import IngotError, InvalidArgument, NotFound
from ingot.common.grpcserver import ServiceHost
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as inference_pb2
from ingot.inference.v1 import inference_service_pb2_grpc as inference_grpc
from ingot.registry.v1 import registry_service_pb2 as registry_pb2
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc
from ingot.tokenizer.v1 import tokenizer_service_pb2 as tokenizer_pb2
from ingot.tokenizer.v1 import tokenizer_service_pb2_grpc as tokenizer_grpc

CHAT_ID = "SmolLM2-135M-Instruct-generic-cpu:1"
CHAT_ALIAS = "smollm2-135m-instruct"
EMBED_ID = "all-MiniLM-L6-v2-generic-cpu:1"
EMBED_ALIAS = "all-minilm-l6-v2"
CREATED = 1_763_000_000
CHAT_CONTEXT = 100

MODELS = (
    registry_pb2.ModelInfo(id=CHAT_ID, alias=CHAT_ALIAS, publisher="HuggingFaceTB", created=CREATED,
                           task=common_pb2.MODEL_TASK_CHAT_COMPLETION, context_length=CHAT_CONTEXT),
    registry_pb2.ModelInfo(id=EMBED_ID, alias=EMBED_ALIAS, publisher="sentence-transformers", created=CREATED,
                           task=common_pb2.MODEL_TASK_EMBEDDINGS),
)


class FakeRegistry(registry_grpc.RegistryServiceServicer):
    def __init__(self) -> None:
        self.resolved: list[str] = []

    async def ResolveModel(self, request, context):
        self.resolved.append(request.name)
        for model in MODELS:
            if request.name in (model.id, model.alias):
                return registry_pb2.ResolveModelResponse(model=model)
        raise NotFound(f"Model '{request.name}' is not in the cache.")

    async def ListModels(self, request, context):
        return registry_pb2.ListModelsResponse(models=MODELS)

    async def ListDeployments(self, request, context):
        return registry_pb2.ListDeploymentsResponse()


BOS = 0
FIM = {"<fim_prefix>": 1, "<fim_suffix>": 2, "<fim_middle>": 3}
FIRST_WORD_ID = 10


class FakeTokenizer(tokenizer_grpc.TokenizerServiceServicer):
    """Templates by tagging each message with its role; encodes word by word into ids it hands out as it
    meets new words, with a BOS when asked for special tokens, and the FIM markers as special tokens while
    `fim` is on. Decoding joins the words without spaces, as the inference fake spells them."""

    def __init__(self) -> None:
        self.requests: list[tokenizer_pb2.ApplyChatTemplateRequest] = []
        self.encoded: list[tokenizer_pb2.EncodeRequest] = []
        self.fim = False
        self.words: dict[str, int] = {}

    def _template(self, messages) -> str:
        return "".join(f"<{m.role}>{m.content}" for m in messages)

    async def ApplyChatTemplate(self, request, context):
        self.requests.append(request)
        prompt = self._template(request.messages)
        return tokenizer_pb2.ApplyChatTemplateResponse(prompt=prompt, token_ids=range(len(prompt.split())))

    async def CountTokens(self, request, context):
        return tokenizer_pb2.CountTokensResponse(token_count=len(self._template(request.conversation.messages).split()))

    def spell(self, token_id: int) -> str:
        return next((word for word, known in self.words.items() if known == token_id), f"t{token_id}")

    def word_id(self, word: str) -> int:
        if self.fim and word in FIM:
            return FIM[word]
        return self.words.setdefault(word, FIRST_WORD_ID + len(self.words))

    async def Encode(self, request, context):
        self.encoded.append(request)
        ids = [self.word_id(word) for word in request.text.split()]
        return tokenizer_pb2.EncodeResponse(token_ids=[BOS, *ids] if request.add_special_tokens else ids)

    async def Decode(self, request, context):
        names = {token_id: word for word, token_id in self.words.items()}
        names.update({token_id: marker for marker, token_id in FIM.items()} if self.fim else {})
        names[BOS] = "<s>"
        for i, token_id in enumerate(request.token_ids):
            if token_id not in names:
                raise InvalidArgument(f"token_ids[{i}] is {token_id}, outside the vocabulary.",
                                      param=f"token_ids[{i}]")
        special = {BOS, *FIM.values()} if request.skip_special_tokens else set()
        return tokenizer_pb2.DecodeResponse(
            text="".join(names[token_id] for token_id in request.token_ids if token_id not in special))


@dataclass
class Script:
    """What the fake inference service does with the next Generate call."""

    pieces: list[str] = field(default_factory=lambda: ["Hello", ",", " world"])
    finish: int = common_pb2.FINISH_REASON_STOP
    # Raised before the first message, or after the pieces.
    fail_first: IngotError | None = None
    fail_after: IngotError | None = None
    # After the pieces, wait for a cancellation that must come from the edge.
    hang: bool = False
    # Keep sending a piece every 10 ms until cancelled.
    endless: bool = False
    # Tool call deltas sent with the piece at that position.
    tool_calls: dict[int, list[inference_pb2.ToolCallDelta]] = field(default_factory=dict)
    # Each choice answers with its prompt's token ids and its own index ("[10 11]#1"), so a test can tell
    # which prompt and which choice an answer came from.
    tell_prompt: bool = False


def _logprob(token: str, top: int) -> inference_pb2.TokenLogprob:
    entry = inference_pb2.TokenLogprob(token=token, logprob=-0.5, bytes=token.encode())
    for rank in range(top):
        alternative = token if rank == 0 else f"alt{rank}"
        entry.top_logprobs.append(inference_pb2.TopLogprob(token=alternative, logprob=-0.5 - rank,
                                                           bytes=alternative.encode()))
    return entry


class FakeInference(inference_grpc.InferenceServiceServicer):
    def __init__(self) -> None:
        self.script = Script()
        self.requests: list[inference_pb2.GenerateRequest] = []
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.cancellations = 0
        # Spells a prompt token for prompt logprobs; the Mesh hands it the tokenizer's vocabulary.
        self.spell = lambda token_id: f"t{token_id}"

    def _message(self, request, index: int, piece: str, first: bool, last: bool,
                 pieces: list[str]) -> inference_pb2.GenerateResponse:
        prompt_tokens = len(request.prompt_token_ids)
        message = inference_pb2.GenerateResponse(
            index=index, token_ids=[100], text=piece,
            finish_reason=self.script.finish if last else common_pb2.FINISH_REASON_UNSPECIFIED,
            usage=common_pb2.Usage(prompt_tokens=prompt_tokens, completion_tokens=len(pieces),
                                   total_tokens=prompt_tokens + len(pieces)) if last else None)
        top = request.sampling.top_logprobs
        if request.sampling.logprobs:
            message.logprobs.append(_logprob(piece, top))
        if first and request.prompt_logprobs:
            message.prompt_logprobs.extend(_logprob(self.spell(token), top) for token in request.prompt_token_ids[1:])
        return message

    def _count_cancel(self, finished: list[bool]) -> None:
        if not finished:
            self.cancellations += 1
            self.cancelled.set()

    async def Generate(self, request, context):
        self.requests.append(request)
        self.started.set()
        # A cancel that lands while grpc writes a yielded message is raised in grpc's loop, outside this
        # generator, and context.cancelled() still says False in the done callback: so an RPC that ended
        # before this generator did counts as cancelled.
        finished: list[bool] = []
        context.add_done_callback(lambda _: self._count_cancel(finished))
        try:
            async for message in self._script_messages(request):
                yield message
        except Exception:
            finished.append(True)
            raise
        finished.append(True)

    async def _script_messages(self, request) -> AsyncIterator[inference_pb2.GenerateResponse]:
        script = self.script
        if script.fail_first:
            raise script.fail_first
        ends = not (script.hang or script.endless or script.fail_after)
        choices = max(request.n, 1)
        for step, piece in enumerate(script.pieces):
            last = ends and step == len(script.pieces) - 1
            for index in range(choices):
                if script.tell_prompt:
                    piece = f"{list(request.prompt_token_ids)}#{index}".replace(",", "")
                message = self._message(request, index, piece, step == 0, last, script.pieces)
                message.tool_calls.extend(script.tool_calls.get(step, []))
                yield message
        if script.fail_after:
            raise script.fail_after
        if script.hang:
            await asyncio.Event().wait()
        while script.endless:
            await asyncio.sleep(0.01)
            yield inference_pb2.GenerateResponse(token_ids=[7], text=" more")


def _service_name(module, service: str) -> str:
    return module.DESCRIPTOR.services_by_name[service].full_name


class Mesh:
    """The three fakes, each a real gRPC server on a free port."""

    def __init__(self) -> None:
        self.registry = FakeRegistry()
        self.tokenizer = FakeTokenizer()
        self.inference = FakeInference()
        self.inference.spell = self.tokenizer.spell
        self.hosts: dict[str, ServiceHost] = {}
        self.addresses: dict[str, str] = {}
        self._stopped: set[str] = set()

    async def start(self) -> None:
        wiring = (
            ("tokenizer", self.tokenizer, tokenizer_grpc.add_TokenizerServiceServicer_to_server,
             _service_name(tokenizer_pb2, "TokenizerService")),
            ("registry", self.registry, registry_grpc.add_RegistryServiceServicer_to_server,
             _service_name(registry_pb2, "RegistryService")),
            ("inference", self.inference, inference_grpc.add_InferenceServiceServicer_to_server,
             _service_name(inference_pb2, "InferenceService")),
        )
        for name, servicer, add, service_name in wiring:
            host = ServiceHost(name, [service_name])
            add(servicer, host.server)
            self.addresses[name] = await host.start("127.0.0.1:0")
            await host.set_serving(True)
            self.hosts[name] = host

    def settings(self, **overrides: str) -> EdgeSettings:
        return EdgeSettings(tokenizer_address=self.addresses["tokenizer"],
                            registry_address=self.addresses["registry"],
                            inference_address=self.addresses["inference"], **overrides)

    async def stop_service(self, name: str) -> None:
        self._stopped.add(name)
        await self.hosts[name].stop(0)

    async def stop(self) -> None:
        await asyncio.gather(*(host.stop(0) for name, host in self.hosts.items() if name not in self._stopped))


def chat_body(**extra: object) -> dict[str, object]:
    return {"model": CHAT_ALIAS, "messages": [{"role": "user", "content": "Say hello"}], **extra}


def sse_data(body: str) -> list[str]:
    """The data of each event, checking the framing on the way: `data: ` lines only, one per event."""
    assert body.endswith("\n\n"), body
    events = body[:-2].split("\n\n")
    for event in events:
        assert event.startswith("data: ") and "\n" not in event, event
    return [event.removeprefix("data: ") for event in events]


def sse_json(body: str) -> list[dict]:
    return [json.loads(data) for data in sse_data(body) if data != "[DONE]"]
