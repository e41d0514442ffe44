"""What every gRPC service shares: the error interceptor, health, reflection, a printed address, a
graceful stop on SIGTERM/SIGINT, and the socket and connection settings that let replicas scale out.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from pydantic import Field

from ingot.common.errors import ErrorInterceptor
from ingot.common.telemetry import ServiceTelemetrySettings, server_interceptors

log = logging.getLogger(__name__)

# Streams of tokens are small; the limit guards against a runaway request (e.g. a huge prompt id list).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ServiceSettings(ServiceTelemetrySettings):
    """What every gRPC service's settings share: where it listens, how it holds its port, and how it ages
    its connections. Each service sets its own default address."""

    listen: str = Field("127.0.0.1:0", description="address to serve gRPC on (port 0 picks a free one)")
    # gRPC turns SO_REUSEPORT on by default, which let a second mesh on one host silently share the
    # first one's ports; sharing a port is now something an operator asks for.
    reuse_port: bool = Field(False, description="let several processes listen on this address (replicas on one "
                             "host; the kernel spreads new connections over them); otherwise a taken address "
                             "is an error")
    # Clients keep a connection for as long as it lives and only re-resolve their target when it closes, so
    # without an age a replica added later would get no traffic from clients already connected.
    max_connection_age: float = Field(120.0, ge=0, description="seconds after which the server asks a client to "
                                      "reconnect (it re-resolves the address and reaches new replicas); 0: never")
    # Streams still running when a connection ages finish on it; one longer than this is cut. An aged
    # connection closes as soon as its last stream ends, so a long grace costs nothing but covers long
    # generations and model downloads.
    max_connection_age_grace: float = Field(6 * 3600.0, ge=0, description="seconds calls still running on an aged "
                                            "connection may take to finish before it is closed")


def server_options(config: ServiceSettings) -> list[tuple[str, int]]:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 1 if config.reuse_port else 0),
    ]
    if config.max_connection_age:
        options += [("grpc.max_connection_age_ms", int(config.max_connection_age * 1000)),
                    ("grpc.max_connection_age_grace_ms", int(config.max_connection_age_grace * 1000))]
    return options


def bind_failure(name: str, listen: str) -> str:
    """Why `listen` could not be bound, said the way an operator can act on it."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (f"ingot {name}: cannot listen on {listen}: the address is already in use by another process "
                    "(another ingot?). Stop it, choose another address, or start every replica that should "
                    "share it with --reuse-port (INGOT_REUSE_PORT=1).")
        return f"ingot {name}: cannot listen on {listen}: {exc.strerror or exc}"
    except ValueError:
        return f"ingot {name}: cannot listen on {listen}: not a host:port address"
    return f"ingot {name}: cannot listen on {listen}"


class ServiceHost:
    """A grpc.aio server with health and reflection for the given fully-qualified service names."""

    def __init__(self, name: str, service_names: Sequence[str], config: ServiceSettings | None = None) -> None:
        self.name = name
        self.server = grpc.aio.server(interceptors=[*server_interceptors(), ErrorInterceptor()],
                                      options=server_options(config or ServiceSettings()))
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = list(service_names)
        reflection.enable_server_reflection(
            [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            self.server,
        )
        self.address: str | None = None

    async def start(self, listen: str, credentials: grpc.ServerCredentials | None = None) -> str:
        host = listen.rsplit(":", 1)[0]
        try:
            if credentials is not None:
                port = self.server.add_secure_port(listen, credentials)
            else:
                port = self.server.add_insecure_port(listen)
        except RuntimeError:
            port = 0
        if port == 0:
            # SystemExit: the message on stderr and exit code 1, not a traceback.
            raise SystemExit(bind_failure(self.name, listen))
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
    config: ServiceSettings,
    service_names: Sequence[str],
    add_servicers: Callable[[grpc.aio.Server], Awaitable[Callable[[], Awaitable[None]] | None]],
    *,
    credentials: grpc.ServerCredentials | None = None,
) -> None:
    """Serves on `config.listen` until SIGTERM or SIGINT, then lets calls in flight finish for
    `config.shutdown_grace`. `add_servicers` registers the servicers and may return a cleanup."""
    host = ServiceHost(name, service_names, config)
    cleanup = await add_servicers(host.server)
    try:
        address = await host.start(config.listen, credentials)
    except SystemExit:
        if cleanup is not None:
            await cleanup()
        raise
    await host.set_serving(True)
    # The launcher and operators read this line to learn the bound port (listen may ask for port 0).
    print(f"ingot {name} listening on {address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s stopping", name)
    await host.stop(config.shutdown_grace)
    if cleanup is not None:
        await cleanup()
