"""`ingot embeddings`: the embeddings service as its own process."""

from __future__ import annotations

import asyncio
import os

# onnxruntime's official wheels may send telemetry unless told not to before import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from ingot.common import settings, telemetry  # noqa: E402
from ingot.common.channels import mesh_channel  # noqa: E402
from ingot.common.grpcserver import run_service  # noqa: E402
from ingot.common.meshtls import channel_credentials, server_credentials  # noqa: E402
from ingot.embeddings.v1 import embeddings_service_pb2 as pb  # noqa: E402
from ingot.embeddings.v1 import embeddings_service_pb2_grpc as pb_grpc  # noqa: E402
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc  # noqa: E402
from services.embeddings.servicer import EmbeddingsServicer, Models  # noqa: E402
from services.embeddings.settings import EmbeddingsSettings  # noqa: E402

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EmbeddingsService"].full_name


def build(server, config: EmbeddingsSettings):
    """Registers the servicer on `server`; returns the loaded-model table and a cleanup coroutine function."""
    registry_channel = mesh_channel(config.registry_address, channel_credentials(config))
    models = Models(registry_grpc.RegistryServiceStub(registry_channel), config)
    pb_grpc.add_EmbeddingsServiceServicer_to_server(EmbeddingsServicer(models, config), server)

    async def cleanup() -> None:
        await models.close()
        await registry_channel.close()

    return models, cleanup


def main(argv: list[str] | None = None) -> int:
    config = settings.load(EmbeddingsSettings, argv, prog="ingot embeddings",
                           description="The embeddings service: embedding models through onnxruntime.")
    telemetry.configure("embeddings", config)

    async def add_servicers(server):
        return build(server, config)[1]

    asyncio.run(run_service("embeddings", config, [SERVICE_NAME], add_servicers,
                            credentials=server_credentials(config)))
    return 0
