"""`ingot registry`: the registry service as its own process."""

from __future__ import annotations

import asyncio

from ingot.common import settings, telemetry
from ingot.common.grpcserver import run_service
from ingot.common.meshtls import server_credentials
from ingot.registry.v1 import registry_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2_grpc as pb_grpc
from services.registry.catalog import RemoteCatalog
from services.registry.deployments import Deployments
from services.registry.downloads import Downloader
from services.registry.fetch import FetchOptions
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RegistryService"].full_name


def create_servicer(config: RegistrySettings) -> RegistryServicer:
    remote = RemoteCatalog(config.catalog_url, config.catalog_cache, config.catalog_ttl)
    options = FetchOptions(chunk_bytes=config.download_buffer_kb * 1024, queue_chunks=config.download_queue_chunks,
                           retries=config.download_retries, read_timeout=config.download_read_timeout)
    downloader = Downloader(catalog_url=config.catalog_url, concurrency=config.download_concurrency,
                            options=options)
    providers = [p.strip().lower() for p in config.execution_providers.split(",") if p.strip()]
    return RegistryServicer(config.models_root, remote=remote, downloader=downloader, providers=providers,
                            deployments=Deployments(config.deployments), import_roots=config.import_roots)


def main(argv: list[str] | None = None) -> int:
    config = settings.load(RegistrySettings, argv, prog="ingot registry",
                           description="The registry service: the model catalog, downloads and the cache on disk.")
    telemetry.configure("registry", config)

    async def add_servicers(server):
        pb_grpc.add_RegistryServiceServicer_to_server(create_servicer(config), server)
        return None

    asyncio.run(run_service("registry", config, [SERVICE_NAME], add_servicers,
                            credentials=server_credentials(config)))
    return 0
