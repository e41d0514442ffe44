"""A service address that is a DNS name with several replicas behind it: the mesh's channels spread calls
round-robin over every address the name resolves to.

A small DNS server on loopback answers the name with two addresses (127.0.0.1 and 127.0.0.2), and gRPC is
pointed at it through the target's authority (`dns://127.0.0.1:PORT/NAME:PORT`), so no system resolver or
/etc/hosts is involved. Behind the addresses run two real registries that differ only in their deployments,
so each answer says which replica served it.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from ingot.common import channels
from ingot.registry.v1 import registry_service_pb2 as pb
from ingot.registry.v1 import registry_service_pb2_grpc as pb_grpc
from tests.integration.helpers import serve_registry

NAME = "replicas.ingot.test"
REPLICAS = ("127.0.0.1", "127.0.0.2")
TYPE_A, CLASS_IN = 1, 1


def dns_answer(query: bytes, addresses: tuple[str, ...]) -> bytes:
    """The reply to one query: A records for NAME, an empty NOERROR answer to anything else."""
    (ident,) = struct.unpack("!H", query[:2])
    end = 12
    labels = []
    while query[end]:
        labels.append(query[end + 1:end + 1 + query[end]].decode().lower())
        end += query[end] + 1
    qtype, _ = struct.unpack("!HH", query[end + 1:end + 5])
    question = query[12:end + 5]
    records = []
    if ".".join(labels) == NAME and qtype == TYPE_A:
        # Name as a pointer to the question (offset 12), TTL 60 s, 4 bytes of address.
        records = [struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 60, 4) + socket.inet_aton(a) for a in addresses]
    header = struct.pack("!HHHHHH", ident, 0x8180, 1, len(records), 0, 0)
    return header + question + b"".join(records)


@contextmanager
def dns_server(addresses: tuple[str, ...]) -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            sock.sendto(dns_answer(query, addresses), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def port_free_on_every_replica() -> int:
    for _ in range(50):
        with socket.socket() as first:
            first.bind((REPLICAS[0], 0))
            port = first.getsockname()[1]
            try:
                with socket.socket() as other:
                    other.bind((REPLICAS[1], port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both loopback addresses")


async def test_calls_to_a_name_with_two_replicas_are_spread_round_robin(tmp_path, monkeypatch):
    monkeypatch.delenv("GRPC_DNS_RESOLVER", raising=False)  # the c-ares resolver reads the target's authority
    port = port_free_on_every_replica()
    hosts = []
    for replica in REPLICAS:
        home = tmp_path / replica
        home.mkdir()
        (home / "deployments.yaml").write_text(
            f"deployments:\n  - {{name: served-by-{replica}, model: smollm2-135m-instruct}}\n")
        host, _ = await serve_registry(home / "models", home / "deployments.yaml", listen=f"{replica}:{port}")
        hosts.append(host)
    try:
        with dns_server(REPLICAS) as dns_port:
            channel = channels.insecure_channel(f"dns://127.0.0.1:{dns_port}/{NAME}:{port}")
            async with channel:
                stub = pb_grpc.RegistryServiceStub(channel)

                async def served_by() -> str:
                    reply = await stub.ListDeployments(pb.ListDeploymentsRequest(), timeout=10)
                    return reply.deployments[0].name

                # Until both subchannels are connected, round_robin uses the ready one.
                seen: set[str] = set()
                for _ in range(200):
                    seen.add(await served_by())
                    if len(seen) == 2:
                        break
                assert seen == {f"served-by-{replica}" for replica in REPLICAS}
                counts = Counter([await served_by() for _ in range(20)])
    finally:
        for host in hosts:
            await host.stop(0)
    assert counts == {f"served-by-{replica}": 10 for replica in REPLICAS}
