"""Connection ageing: a replica added behind a DNS name gets calls from a client that was already connected,
once the server ages that client's connection and the client resolves the name again."""

from __future__ import annotations

import asyncio
import time

from ingot.common import channels
from ingot.common.grpcserver import ServiceSettings
from ingot.registry.v1 import registry_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2_grpc as pb_grpc
from tests.integration.helpers import serve_registry
from tests.integration.test_channels_dns import NAME, REPLICAS, dns_server, port_free_on_every_replica

# gRPC resolves a name at most every 30 s by default, so the new replica is seen within about that.
WAIT_S = 60


async def test_a_replica_added_to_the_name_gets_calls_once_connections_age(tmp_path, monkeypatch):
    monkeypatch.delenv("GRPC_DNS_RESOLVER", raising=False)  # the c-ares resolver reads the target's authority
    port = port_free_on_every_replica()
    aged = ServiceSettings(max_connection_age=1, max_connection_age_grace=60)
    hosts = []
    for replica in REPLICAS:
        home = tmp_path / replica
        home.mkdir()
        (home / "deployments.yaml").write_text(
            f"deployments:\n  - {{name: served-by-{replica}, model: smollm2-135m-instruct}}\n")
        host, _ = await serve_registry(home / "models", home / "deployments.yaml", listen=f"{replica}:{port}",
                                       config=aged)
        hosts.append(host)
    answered = [REPLICAS[0]]
    try:
        with dns_server(answered) as dns_port:
            channel = channels.insecure_channel(f"dns://127.0.0.1:{dns_port}/{NAME}:{port}")
            async with channel:
                stub = pb_grpc.RegistryServiceStub(channel)

                async def served_by() -> str:
                    reply = await stub.ListDeployments(pb.ListDeploymentsRequest(), timeout=10)
                    return reply.deployments[0].name.removeprefix("served-by-")

                assert {await served_by() for _ in range(10)} == {REPLICAS[0]}
                # The autoscaler adds a replica: only the name's answer changes.
                answered.append(REPLICAS[1])
                started = time.monotonic()
                while await served_by() != REPLICAS[1]:
                    assert time.monotonic() - started < WAIT_S, "the added replica never got a call"
                    await asyncio.sleep(0.2)
    finally:
        for host in hosts:
            await host.stop(0)
