"""InferenceService over gRPC: resolves models through the registry and bridges calls to the engine."""

from __future__ import annotations

import asyncio

import grpc

from ingot.common.errors import InvalidArgument, NotFound
from ingot.common.resolver import ModelResolver
from ingot.common.v1 import common_pb2
from ingot.inference.v1 import inference_service_pb2 as pb
from ingot.inference.v1 import inference_service_pb2_grpc as pb_grpc
from services.inference import models, sampling, toolcalls
from services.inference.engine import Engine, Sequence, asyncio_emitter
from services.inference.events import Failed, PromptScored, Tokens
from services.inference.logits import LogprobEntry
from services.inference.stops import Piece, Release, StopMatcher


def _loaded_message(model) -> pb.LoadedModel:
    return pb.LoadedModel(id=model.id, active_sequences=model.active_sequences,
                          generated_tokens=model.generated_tokens, loaded_at=int(model.loaded_at),
                          last_used_at=int(model.last_used_at), ttl_seconds=model.ttl_seconds,
                          execution_provider=model.execution_provider, size_bytes=model.size_bytes,
                          batches=model.batches)


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    def __init__(self, engine: Engine, directory: ModelResolver) -> None:
        self._engine = engine
        self._directory = directory

    async def _chat_model(self, name: str, execution_provider: str, ttl: int | None):
        models.check_provider(execution_provider)
        info = await self._directory.resolve(name)
        if info.task != common_pb2.MODEL_TASK_CHAT_COMPLETION:
            raise InvalidArgument(f"The model '{info.id}' is not a chat model.", param="model")
        return await self._engine.ensure_loaded(info, execution_provider=execution_provider, ttl=ttl)

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        model = await self._chat_model(request.model, request.execution_provider,
                                       request.ttl_seconds if request.HasField("ttl_seconds") else None)
        prompt = list(request.prompt_token_ids)
        if prompt and max(prompt) >= model.vocab_size:
            raise InvalidArgument(
                f"Token id {max(prompt)} is outside the model's vocabulary of {model.vocab_size}.", param="prompt")
        params = request.sampling
        requested = params.max_tokens if params.HasField("max_tokens") else None
        budget = sampling.budget(len(prompt), requested, context_length=model.info.context_length,
                                 max_output_tokens=model.info.max_output_tokens or model.info.context_length)
        options = sampling.search_options(params, budget.max_length)
        n = sampling.choices(request.n)
        stops = sampling.stop_strings(params)
        top_logprobs = sampling.top_logprobs(params)
        processor = sampling.logits_processor(params, model.vocab_size)  # validates before anything is admitted
        guidance = toolcalls.guidance(request, sampling.guidance(request.constraint))
        room = sampling.fast_forward_length(budget, model.info.context_length)
        fast_forward = guidance is not None and room is not None and top_logprobs is None and processor is None
        if fast_forward:
            options["max_length"] = room
        events: asyncio.Queue = asyncio.Queue()
        emit = asyncio_emitter(asyncio.get_running_loop(), events)
        sequences = []
        for index in range(n):
            choice_options = dict(options)
            if "random_seed" in options:
                choice_options["random_seed"] = (options["random_seed"] + index) % (2**31)
            sequences.append(Sequence(
                model_id=model.id, prompt=prompt, search_options=choice_options, budget=budget, emit=emit,
                index=index, processor=sampling.logits_processor(params, model.vocab_size, prompt),
                top_logprobs=top_logprobs, score_prompt=request.prompt_logprobs, guidance=guidance,
                fast_forward=fast_forward))
        try:
            for sequence in sequences:
                self._engine.submit(sequence)
            # Headers go out on admission, so a caller knows its request is queued before the first token.
            await context.send_initial_metadata(())
            async for response in _responses(events, sequences, stops, model, toolcalls.parses_calls(request)):
                yield response
        finally:
            # A no-op after a normal finish; on a cancelled call the engine drops each sequence before its
            # next step.
            for sequence in sequences:
                sequence.cancel()

    async def LoadModel(self, request: pb.LoadModelRequest, context) -> pb.LoadModelResponse:
        ttl = request.ttl_seconds if request.HasField("ttl_seconds") else None
        model = await self._chat_model(request.model, request.execution_provider, ttl)
        return pb.LoadModelResponse(model=_loaded_message(model))

    async def UnloadModel(self, request: pb.UnloadModelRequest, context) -> pb.UnloadModelResponse:
        info = await self._directory.resolve(request.model)
        if not await self._engine.unload(info.id, force=request.force):
            raise NotFound(f"The model '{request.model}' is not loaded.", param="model", code="model_not_loaded")
        return pb.UnloadModelResponse()

    async def ListLoadedModels(self, request, context) -> pb.ListLoadedModelsResponse:
        return pb.ListLoadedModelsResponse(models=[_loaded_message(m) for m in self._engine.loaded()])

    async def GetDevice(self, request, context) -> pb.GetDeviceResponse:
        return pb.GetDeviceResponse(device_id=self._engine.device_id)

    async def SetDevice(self, request: pb.SetDeviceRequest, context) -> pb.SetDeviceResponse:
        self._engine.set_device(request.device_id)
        return pb.SetDeviceResponse()


class _Choice:
    """One choice's stream: tool calls parsed out of its text, stop strings matched on the rest (the prose,
    so a stop string never cuts a call short), tokens counted up to where it ended."""

    def __init__(self, stops: tuple[str, ...], parse_calls: bool) -> None:
        self.calls = toolcalls.ToolCallParser() if parse_calls else None
        self.matcher = StopMatcher(stops)
        self.completion_tokens = 0
        self.done = False

    def feed(self, response: pb.GenerateResponse, event: Tokens) -> Release:
        text = event.text
        if self.calls is not None:
            parsed = self.calls.feed(text)
            response.tool_calls.extend(parsed.deltas)
            text = parsed.content
        return self.matcher.feed(Piece(event.token_id, text, event.logprob))

    def flush(self, response: pb.GenerateResponse, reason: int) -> tuple[list[Piece], int]:
        """What is still held when the choice ends, and its finish reason."""
        pieces: list[Piece] = []
        if self.calls is not None:
            parsed = self.calls.flush()
            response.tool_calls.extend(parsed.deltas)
            if parsed.content:
                # Prose held back in case it began a marker; its tokens went out already.
                release = self.matcher.feed(Piece(None, parsed.content))
                if release.stopped:
                    return release.pieces, common_pb2.FINISH_REASON_STOP
                pieces.extend(release.pieces)
            if self.calls.calls and reason == common_pb2.FINISH_REASON_STOP:
                reason = common_pb2.FINISH_REASON_TOOL_CALLS
        return pieces + self.matcher.flush(), reason


def _piece_message(response: pb.GenerateResponse, piece: Piece, model) -> None:
    response.text += piece.text
    if piece.token_id is not None:
        response.token_ids.append(piece.token_id)
    if piece.logprob is not None:
        response.logprobs.append(_logprob_message(piece.logprob, model))


def _logprob_message(entry: LogprobEntry, model) -> pb.TokenLogprob:
    def spelled(token_id: int) -> tuple[str, bytes]:
        raw = model.token_bytes[token_id]
        return raw.decode("utf-8", errors="replace"), raw

    token, raw = spelled(entry.token_id)
    message = pb.TokenLogprob(token_id=entry.token_id, token=token, logprob=entry.logprob, bytes=raw)
    for alternative in entry.top:
        text, alt_raw = spelled(alternative.token_id)
        message.top_logprobs.append(pb.TopLogprob(token_id=alternative.token_id, token=text,
                                                  logprob=alternative.logprob, bytes=alt_raw))
    return message


async def _responses(events: asyncio.Queue, sequences: list[Sequence], stops: tuple[str, ...], model,
                     parse_calls: bool = False):
    """Turns engine events into GenerateResponses: tokens that piled up while the client read slowly go
    out as one message per choice, and a choice whose stop string matched ends at once."""
    choices = [_Choice(stops, parse_calls) for _ in sequences]
    prompt_tokens = len(sequences[0].prompt)
    while not all(choice.done for choice in choices):
        batch = [await events.get()]
        while not events.empty():
            batch.append(events.get_nowait())
        responses: dict[int, pb.GenerateResponse] = {}
        for event in batch:
            choice = choices[event.index]
            if choice.done:
                continue
            response = responses.setdefault(event.index, pb.GenerateResponse(index=event.index))
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, PromptScored):
                response.prompt_logprobs.extend(_logprob_message(entry, model) for entry in event.entries)
                continue
            if isinstance(event, Tokens):
                choice.completion_tokens += 1
                release = choice.feed(response, event)
                for piece in release.pieces:
                    _piece_message(response, piece, model)
                if not release.stopped:
                    continue
                sequences[event.index].cancel()
                reason = common_pb2.FINISH_REASON_STOP
            else:
                pieces, reason = choice.flush(response, event.reason)
                for piece in pieces:
                    _piece_message(response, piece, model)
            choice.done = True
            response.finish_reason = reason
            response.usage.CopyFrom(common_pb2.Usage(
                prompt_tokens=prompt_tokens, completion_tokens=choice.completion_tokens,
                total_tokens=prompt_tokens + choice.completion_tokens))
        for index in sorted(responses):
            response = responses[index]
            if (response.token_ids or response.text or response.finish_reason or response.prompt_logprobs
                    or response.tool_calls):
                yield response
