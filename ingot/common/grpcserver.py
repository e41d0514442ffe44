"""What every gRPC service shares: the error interceptor, health, reflection, a printed address, and a
graceful stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from ingot.common.errors import ErrorInterceptor
from ingot.common.telemetry import server_interceptors

log = logging.getLogger(__name__)

# Streams of tokens are small; the limit guards against a runaway request (e.g. a huge prompt id list).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Replicas behind one address: several processes may bind the same port.
    ("grpc.so_reuseport", 1),
)


def server_options(max_connection_age: float = 0.0, grace: float = 5.0) -> tuple[tuple[str, int], ...]:
    """SERVER_OPTIONS, plus a connection age when one is set.

    Clients resolve a service's name (dns:///inference:50053) only when a connection drops, so replicas added
    by an autoscaler get no calls from connections opened before them. An aged connection is closed (GOAWAY)
    once its calls end, or after `grace` (as long as the longest stream), and the client resolves again.
    """
    if max_connection_age <= 0:
        return SERVER_OPTIONS
    return (*SERVER_OPTIONS, ("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(grace * 1000)))


class ServiceHost:
    """A grpc.aio server with health and reflection for the given fully-qualified service names."""

    def __init__(self, name: str, service_names: Sequence[str],
                 options: Sequence[tuple[str, int]] = SERVER_OPTIONS) -> None:
        self.name = name
        self.server = grpc.aio.server(interceptors=[*server_interceptors(), ErrorInterceptor()],
                                      options=list(options))
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = list(service_names)
        reflection.enable_server_reflection(
            [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            self.server,
        )
        self.address: str | None = None

    async def start(self, listen: str) -> str:
        host = listen.rsplit(":", 1)[0]
        port = self.server.add_insecure_port(listen)
        if port == 0:
            raise SystemExit(f"{self.name}: cannot listen on {listen}")
        await self.server.start()
        self.address = f"{host}:{port}"
        return self.address

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", *self.service_names):
            await self.health.set(service, status)

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def run_service(
    name: str,
    listen: str,
    service_names: Sequence[str],
    add_servicers: Callable[[grpc.aio.Server], Awaitable[Callable[[], Awaitable[None]] | None]],
    *,
    grace: float = 5.0,
    max_connection_age: float = 0.0,
) -> None:
    """Serves until SIGTERM or SIGINT. `add_servicers` registers the servicers and may return a cleanup."""
    host = ServiceHost(name, service_names, server_options(max_connection_age, grace))
    cleanup = await add_servicers(host.server)
    address = await host.start(listen)
    await host.set_serving(True)
    # The launcher and operators read this line to learn the bound port (listen may ask for port 0).
    print(f"ingot {name} listening on {address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s stopping", name)
    await host.stop(grace)
    if cleanup is not None:
        await cleanup()
