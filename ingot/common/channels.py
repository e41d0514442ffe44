"""Client channels to other services, shaped for a mesh whose services restart and scale out."""

from __future__ import annotations

import json

import grpc

from ingot.common.grpcserver import MAX_MESSAGE_BYTES
from ingot.common.telemetry import client_interceptors

# Calls that a replica may safely be asked again when another one went away: reads, pure functions, and
# Generate. gRPC commits a call (stops retrying it) once the server's headers arrive, which a unary call's
# server sends with its answer and the inference service sends when it admits a Generate; so gRPC retries a
# Generate only until admission (the edge retries it from there until its first token, edge/mesh/failover.py).
RETRIED_METHODS = {
    "ingot.tokenizer.v1.TokenizerService": (),  # every method
    "ingot.registry.v1.RegistryService": ("ListModels", "ResolveModel", "ListDeployments", "ListCatalog",
                                          "GetCache"),
    "ingot.inference.v1.InferenceService": ("Generate", "ListLoadedModels", "GetDevice"),
    "ingot.embeddings.v1.EmbeddingsService": ("Embed", "EmbedImages", "ListLoadedModels"),
}
# UNAVAILABLE only: the replica is gone or stopping. Up to 4 tries, which covers a request that meets
# two dying replicas in a row; the backoff is short so a retry adds little to the first token.
RETRY_POLICY = {"maxAttempts": 4, "initialBackoff": "0.05s", "maxBackoff": "0.5s", "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"]}


def _method_names() -> list[dict[str, str]]:
    names = []
    for service, methods in RETRIED_METHODS.items():
        names += [{"service": service, "method": method} for method in methods] or [{"service": service}]
    return names


# round_robin spreads calls over every replica a name resolves to (dns:///inference:50053 under
# Kubernetes), skipping those it cannot reach. Short reconnect backoff: a restarted service is back in use
# within a second, not after gRPC's default backoff of up to two minutes.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{"name": _method_names(), "retryPolicy": RETRY_POLICY}],
}
_SERVICE_CONFIG = json.dumps(SERVICE_CONFIG)
CHANNEL_OPTIONS = (
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 1),
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
