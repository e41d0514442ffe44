"""`ingot registry`: the registry service as its own process."""

from __future__ import annotations

import asyncio

from ingot.common import logs, settings
from ingot.common.grpcserver import run_service
from ingot.registry.v1 import registry_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2_grpc as pb_grpc
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RegistryService"].full_name


def main(argv: list[str] | None = None) -> int:
    config = settings.load(RegistrySettings, argv, prog="ingot registry",
                           description="The registry service: the models in the cache on disk.")
    logs.configure("registry", config.log_level)

    async def add_servicers(server):
        pb_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(config.models_root), server)
        return None

    asyncio.run(run_service("registry", config.listen, [SERVICE_NAME], add_servicers))
    return 0
