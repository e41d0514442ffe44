"""The public gRPC API's server: IngotService, health and reflection on the edge's gRPC port, over TLS when
the edge has a certificate."""

from __future__ import annotations

import logging

import grpc

from edge.grpcapi.pipeline import RestPipeline, loopback_url
from edge.grpcapi.servicer import IngotServicer
from edge.shared.settings import EdgeSettings
from ingot.api.v1 import ingot_service_pb2 as pb
from ingot.api.v1 import ingot_service_pb2_grpc as pb_grpc
from ingot.common.grpcserver import ServiceHost

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["IngotService"].full_name


class GrpcApi:
    """Started once the HTTP site listens (its calls go there), stopped once the HTTP requests drained."""

    def __init__(self, settings: EdgeSettings, http_port: int) -> None:
        self.settings = settings
        tls = settings.tls_cert is not None
        self.pipeline = RestPipeline(loopback_url(settings.host, http_port, tls))
        self.host = ServiceHost("edge gRPC API", [SERVICE_NAME])
        pb_grpc.add_IngotServiceServicer_to_server(IngotServicer(self.pipeline), self.host.server)
        self.address = ""

    def _bind(self, address: str) -> int:
        s = self.settings
        if s.tls_cert is None or s.tls_key is None:
            return self.host.server.add_insecure_port(address)
        credentials = grpc.ssl_server_credentials([(s.tls_key.read_bytes(), s.tls_cert.read_bytes())])
        return self.host.server.add_secure_port(address, credentials)

    async def start(self) -> str:
        await self.pipeline.open()
        host = self.settings.host
        address = f"[{host}]:{self.settings.grpc_port}" if ":" in host else f"{host}:{self.settings.grpc_port}"
        if self._bind(address) == 0:
            raise SystemExit(f"invalid settings: the gRPC API cannot listen on {address} (--grpc-port)")
        await self.host.server.start()
        await self.host.set_serving(True)
        self.address = address
        return address

    async def draining(self) -> None:
        # Load balancers stop sending calls; the ones that still come get UNAVAILABLE from the edge's drain.
        await self.host.set_serving(False)

    async def stop(self, grace: float) -> None:
        await self.host.stop(grace)
        await self.pipeline.close()
