"""The replicas behind one service address, each asked on its own: for readiness and model placement.

A service address is a gRPC target that may stand for several replicas: a list (`ipv4:10.0.0.5:50053,
10.0.0.6:50053`) or a DNS name with several addresses (a headless Service under Kubernetes). Calls go
through the service's round-robin channel; the questions here ("is each one serving?", "which one holds
this model?") need each replica alone, so each gets a short-lived channel of its own. Replicas that share
one address (several processes on one port with --reuse-port) cannot be told apart and count as one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ingot.common.channels import CHANNEL_OPTIONS, target
from ingot.common.errors import IngotError, NotFound, Unavailable, error_from_rpc
from ingot.common.telemetry import client_interceptors
from ingot.inference.v1 import inference_service_pb2 as inference_pb2
from ingot.inference.v1 import inference_service_pb2_grpc as inference_grpc

# A readiness probe must answer quickly even when a replica hangs; a second is ample on a healthy mesh.
CHECK_TIMEOUT = 1.0

T = TypeVar("T")


class Service(Protocol):
    """What edge.mesh.backends.Service holds: a name for errors, the address, the balanced channel."""

    name: str
    address: str
    channel: grpc.aio.Channel
# A channel to one replica neither balances nor retries: asking the same replica again would not help.
_DIRECT_OPTIONS = tuple(option for option in CHANNEL_OPTIONS if option[0] != "grpc.service_config")


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), port


def _format(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def replica_addresses(address: str) -> list[str]:
    """Each replica's host:port; empty when the target names none this way (a unix socket, a DNS name that
    does not resolve now)."""
    full = target(address)
    scheme, _, rest = full.partition(":")
    if scheme in ("ipv4", "ipv6"):
        return [_format(*_host_port(item)) for item in rest.split(",") if item]
    if scheme != "dns":
        return []
    # dns:///host:port, or dns://dns-server/host:port: the name is what follows the last slash.
    host, port = _host_port(rest.rsplit("/", 1)[-1])
    try:
        ipaddress.ip_address(host)
        return [_format(host, port)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found = dict.fromkeys(_format(info[4][0], port) for info in infos)
    return list(found)


def _direct(address: str) -> str:
    """A target for exactly this replica, not re-resolved."""
    host, _ = _host_port(address)
    return f"ipv6:{address}" if ":" in host else f"ipv4:{address}"


@dataclass(frozen=True)
class Replica:
    address: str
    channel: grpc.aio.Channel


@asynccontextmanager
async def replicas(service: Service) -> AsyncIterator[list[Replica]]:
    """A channel to each replica of `service`, closed after; when the replicas cannot be told apart, the
    service's own channel stands for them all."""
    addresses = await replica_addresses(service.address)
    if len(addresses) < 2:
        yield [Replica(addresses[0] if addresses else service.address, service.channel)]
        return
    own = [Replica(address, grpc.aio.insecure_channel(_direct(address), options=_DIRECT_OPTIONS,
                                                      interceptors=client_interceptors()))
           for address in addresses]
    try:
        yield own
    finally:
        await asyncio.gather(*(replica.channel.close() for replica in own))


async def health(channel: grpc.aio.Channel) -> str:
    """SERVING, NOT_SERVING, SERVICE_UNKNOWN, or the gRPC code of a failed check (UNAVAILABLE, ...)."""
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                                timeout=CHECK_TIMEOUT)
    except grpc.aio.AioRpcError as err:
        return err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


async def each(service: Service, ask: Callable[[grpc.aio.Channel], Awaitable[T]]) -> dict[str, T]:
    """`ask` of every replica at once, by replica address."""
    async with replicas(service) as found:
        answers = await asyncio.gather(*(ask(replica.channel) for replica in found))
    return {replica.address: answer for replica, answer in zip(found, answers, strict=True)}


async def service_health(service: Service) -> dict[str, str]:
    return await each(service, health)


async def on_each(service: Service, ask: Callable[[grpc.aio.Channel], Awaitable[T]]) -> dict[str, T]:
    """`ask` of every replica, by replica address, leaving out replicas that are down; raises the first
    other failure, or the first failure when no replica answered."""

    async def answer(channel: grpc.aio.Channel) -> T | IngotError:
        try:
            return await ask(channel)
        except grpc.RpcError as err:
            return error_from_rpc(err, service=service.name)

    answers = await each(service, answer)
    failures = [answer for answer in answers.values() if isinstance(answer, IngotError)]
    for failure in failures:
        if not isinstance(failure, Unavailable):
            raise failure
    if failures and len(failures) == len(answers):
        raise failures[0]
    return {address: answer for address, answer in answers.items() if not isinstance(answer, IngotError)}


async def loaded_models(service: Service, timeout: float) -> dict[str, list[inference_pb2.LoadedModel]]:
    """What each inference replica that is up holds in memory."""

    async def ask(channel: grpc.aio.Channel) -> list[inference_pb2.LoadedModel]:
        reply = await inference_grpc.InferenceServiceStub(channel).ListLoadedModels(
            inference_pb2.ListLoadedModelsRequest(), timeout=timeout)
        return list(reply.models)

    return await on_each(service, ask)


async def load_model(service: Service, request: inference_pb2.LoadModelRequest, timeout: float) -> None:
    """Loads on every replica that is up: each replica generates only with what it holds itself."""
    await on_each(service, lambda channel: inference_grpc.InferenceServiceStub(channel).LoadModel(
        request, timeout=timeout))


async def unload_model(service: Service, request: inference_pb2.UnloadModelRequest, timeout: float) -> None:
    """Unloads from every replica that is up; NotFound only when none of them held it."""

    async def ask(channel: grpc.aio.Channel) -> bool:
        try:
            await inference_grpc.InferenceServiceStub(channel).UnloadModel(request, timeout=timeout)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return False
        return True

    unloaded = await on_each(service, ask)
    if not any(unloaded.values()):
        raise NotFound(f"The model '{request.model}' is not loaded.", param="model")
