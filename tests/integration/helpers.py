"""Helpers for the integration tests: a registry in-process, a service as a real process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ingot.common.grpcserver import ServiceHost, ServiceSettings
from ingot.registry.v1 import registry_service_pb2_grpc as pb_grpc
from services.registry.server import SERVICE_NAME
from services.registry.deployments import Deployments
from services.registry.servicer import RegistryServicer

REPO = Path(__file__).resolve().parents[2]


async def serve_registry(models_root: Path, deployments: Path | None = None, listen: str = "127.0.0.1:0",
                         config: ServiceSettings | None = None):
    host = ServiceHost("registry", [SERVICE_NAME], config)
    pb_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(models_root, deployments=Deployments(deployments)), host.server)
    address = await host.start(listen)
    await host.set_serving(True)
    return host, address


def start_process(args: list[str]) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "ingot.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline().strip()
    match = re.fullmatch(r"ingot \w+ listening on (127\.0\.0\.1:\d+)", line)
    if match is None:
        process.kill()
        process.wait()
        pytest.fail(f"unexpected first line {line!r}")
    return process, match.group(1)


def stop_process(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def health(address: str, service: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10)
    return response.status
