"""`ingot tokenizer`: the tokenizer service as its own process."""

from __future__ import annotations

import asyncio

from ingot.common import settings, telemetry
from ingot.common.channels import mesh_channel
from ingot.common.grpcserver import run_service
from ingot.common.meshtls import channel_credentials, server_credentials
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc
from ingot.tokenizer.v1 import tokenizer_service_pb2 as pb
from ingot.tokenizer.v1 import tokenizer_service_pb2_grpc as pb_grpc
from ingot.common.resolver import ModelResolver
from services.tokenizer.servicer import TokenizerServicer
from services.tokenizer.settings import TokenizerSettings

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TokenizerService"].full_name


def main(argv: list[str] | None = None) -> int:
    config = settings.load(TokenizerSettings, argv, prog="ingot tokenizer",
                           description="The tokenizer service: chat templates, encode, decode and count.")
    telemetry.configure("tokenizer", config)

    async def add_servicers(server):
        # The channel belongs to this loop: it is made here, inside asyncio.run, not before it.
        registry_channel = mesh_channel(config.registry_address, channel_credentials(config))
        resolver = ModelResolver(registry_grpc.RegistryServiceStub(registry_channel))
        pb_grpc.add_TokenizerServiceServicer_to_server(TokenizerServicer(resolver), server)
        return registry_channel.close

    asyncio.run(run_service("tokenizer", config, [SERVICE_NAME], add_servicers,
                            credentials=server_credentials(config)))
    return 0
