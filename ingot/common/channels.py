"""Client channels to other services, shaped for a mesh whose services restart and scale out."""

from __future__ import annotations

import json

import grpc

from ingot.common.grpcserver import MAX_MESSAGE_BYTES
from ingot.common.telemetry import client_interceptors

# round_robin spreads calls over every replica a name resolves to (dns:///inference:50053 under
# Kubernetes). Short reconnect backoff: a restarted service is back in use within a second, not after
# gRPC's default backoff of up to two minutes.
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
CHANNEL_OPTIONS = (
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
)


def target(address: str) -> str:
    """A bare host:port becomes a dns:/// target so that every replica behind the name is used."""
    if "://" in address or address.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return address
    return f"dns:///{address}"


def insecure_channel(address: str) -> grpc.aio.Channel:
    # The interceptors carry the trace context and the request id to the called service.
    return grpc.aio.insecure_channel(target(address), options=CHANNEL_OPTIONS, interceptors=client_interceptors())


def mesh_channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    """A channel to a service: over mutual TLS with the mesh's credentials (ingot.common.meshtls), else plaintext."""
    if credentials is None:
        return insecure_channel(address)
    return grpc.aio.secure_channel(target(address), credentials, options=CHANNEL_OPTIONS,
                                   interceptors=client_interceptors())
