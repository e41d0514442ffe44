"""A real registry service in-process for the download tests, restartable on the same home."""

from __future__ import annotations

from pathlib import Path

import grpc

from ingot.common.grpcserver import ServiceHost
from ingot.registry.v1 import registry_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2_grpc as pb_grpc
from services.registry.server import SERVICE_NAME, create_servicer
from services.registry.settings import RegistrySettings


class Registry:
    """A registry in-process on a free port; `restart()` gives a fresh one on the same home, as a new process would."""

    def __init__(self, home: Path, catalog_url: str, import_dirs: str = "") -> None:
        self.settings = RegistrySettings(home=home, catalog_url=catalog_url, download_retries=3,
                                         download_read_timeout=10, import_dirs=import_dirs)
        self.host: ServiceHost | None = None
        self.channel: grpc.aio.Channel | None = None
        self.stub: pb_grpc.RegistryServiceStub | None = None
        self.address = ""

    async def start(self) -> Registry:
        self.host = ServiceHost("registry", [SERVICE_NAME])
        pb_grpc.add_RegistryServiceServicer_to_server(create_servicer(self.settings), self.host.server)
        self.address = await self.host.start("127.0.0.1:0")
        await self.host.set_serving(True)
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = pb_grpc.RegistryServiceStub(self.channel)
        return self

    async def stop(self) -> None:
        await self.channel.close()
        await self.host.stop(0)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def download(self, name: str, **fields) -> list[pb.DownloadModelResponse]:
        return [event async for event in self.stub.DownloadModel(pb.DownloadModelRequest(name=name, **fields))]

    async def cached(self) -> list[str]:
        return [m.id for m in (await self.stub.ListModels(pb.ListModelsRequest(), timeout=10)).models]

