"""ingot.api.v1.IngotService: each call as its REST route answers it (see `pipeline`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from edge.grpcapi import messages
from edge.grpcapi.pipeline import RestPipeline, headers_from
from ingot.api.v1 import ingot_service_pb2 as pb
from ingot.api.v1 import ingot_service_pb2_grpc as pb_grpc


def _headers(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return headers_from(context.invocation_metadata())


class IngotServicer(pb_grpc.IngotServiceServicer):
    def __init__(self, pipeline: RestPipeline) -> None:
        self.pipeline = pipeline

    async def Chat(self, request: pb.ChatRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ChatResponse]:
        events = self.pipeline.stream("/v1/chat/completions", messages.chat_body(request), _headers(context))
        async for chunk in events:
            for message in messages.chat_responses(chunk):
                yield message

    async def Complete(self, request: pb.CompleteRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[pb.CompleteResponse]:
        events = self.pipeline.stream("/v1/completions", messages.complete_body(request), _headers(context))
        async for chunk in events:
            for message in messages.complete_responses(chunk):
                yield message

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        body = await self.pipeline.post("/v1/embeddings", messages.embed_body(request), _headers(context))
        return messages.embed_response(body)

    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        return messages.models_response(await self.pipeline.get("/v1/models", _headers(context)))
