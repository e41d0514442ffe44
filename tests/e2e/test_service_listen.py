"""A service run alone as a container runs it: listening on every interface when told, its Prometheus endpoint
on the interface it is told (a pod is scraped from another address), and `ingot probe` seeing its health."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.e2e.mesh import free_port

pytestmark = pytest.mark.e2e


def ingot(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingot.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def tokenizer():
    grpc_port, metrics_port = free_port(), free_port()
    # 127.0.0.2 stands for the pod's address: loopback, yet not the 127.0.0.1 the endpoint used to be fixed to.
    process = subprocess.Popen([sys.executable, "-m", "ingot.cli", "tokenizer", "--listen", f"0.0.0.0:{grpc_port}",
                                "--registry-address", f"127.0.0.1:{free_port()}", "--metrics-port",
                                str(metrics_port), "--metrics-host", "127.0.0.2"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert f"listening on 0.0.0.0:{grpc_port}" in line, line
        yield grpc_port, metrics_port
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()


def test_a_service_told_to_listen_on_every_interface_serves_and_reports_its_health(tokenizer):
    grpc_port, _ = tokenizer
    assert ingot("probe", "--probe-url", f"grpc://127.0.0.1:{grpc_port}").returncode == 0
    assert ingot("probe", "--probe-url", f"grpc://127.0.0.2:{grpc_port}").returncode == 0


def test_the_metrics_endpoint_binds_the_host_it_is_given(tokenizer):
    _, metrics_port = tokenizer
    metrics = httpx.get(f"http://127.0.0.2:{metrics_port}/metrics", timeout=10)
    assert metrics.status_code == 200 and "ingot_rpc_requests_total" in metrics.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)


def test_probe_fails_when_nothing_answers_and_names_what_it_saw():
    port = free_port()
    for url in (f"grpc://127.0.0.1:{port}", f"http://127.0.0.1:{port}/ready"):
        done = ingot("probe", "--probe-url", url, "--probe-timeout", "2")
        assert done.returncode == 1 and url in done.stderr
    assert ingot("probe", "--probe-url", "ftp://example").returncode != 0
