"""Faults of each service but inference's SIGKILL (test_faults.py): a killed tokenizer or registry fails
only the routes that need it, /ready names it, the launcher brings it back and nothing else restarts; a
hung (SIGSTOPped) service is a 504, never a hang."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.conftest import SMOLLM2_ALIAS
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Say hello."}]
DEADLINE_S = 4


@pytest.fixture(scope="module")
def mesh(ingot_home, smollm2_dir):
    running = Mesh(ingot_home, env={"INGOT_FIRST_TOKEN_TIMEOUT": str(DEADLINE_S),
                                    "INGOT_CALL_TIMEOUT": str(DEADLINE_S)}).start()
    _until_ok(running)
    yield running
    running.stop()


def _chat(mesh: Mesh) -> httpx.Response:
    return httpx.post(f"{mesh.base_url}/v1/chat/completions", timeout=60,
                      json={"model": SMOLLM2_ALIAS, "messages": HELLO, "max_tokens": 2})


def _until_ok(mesh: Mesh, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (reply := _chat(mesh)).status_code != 200:
        assert reply.status_code in (503, 504), reply.text
        assert time.monotonic() < deadline, f"the mesh did not recover: {reply.status_code} {reply.text}"
        time.sleep(0.2)


def _ready(mesh: Mesh) -> dict:
    return httpx.get(f"{mesh.base_url}/ready", timeout=10).json()


@pytest.mark.parametrize(("service", "failing_route"), [
    ("tokenizer", "/v1/chat/completions"),
    ("registry", "/v1/models"),
])
def test_a_killed_service_fails_only_its_routes_and_comes_back_alone(mesh, service, failing_route):
    others = {name: pid for name, pid in mesh.pids.items() if name not in (service, "edge")}
    old_pid = mesh.kill(service)
    deadline = time.monotonic() + 5
    while (ready := _ready(mesh))["services"][service]["status"] == "SERVING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ready["status"] == "not_ready"
    assert all(ready["services"][name]["status"] == "SERVING" for name in others)
    if failing_route == "/v1/models":
        reply = httpx.get(f"{mesh.base_url}{failing_route}", timeout=30)
    else:
        reply = _chat(mesh)
    # Unless the launcher was quicker than this request.
    if mesh.pids[service] == old_pid:
        assert reply.status_code == 503, reply.text
        assert reply.headers["Retry-After"]
        assert reply.json()["error"]["message"]
    assert httpx.get(f"{mesh.base_url}/health", timeout=10).status_code == 200

    mesh.wait_restarted(service, old_pid)
    # The edge's channel reconnects within its backoff (up to a second); chat may be answered sooner from
    # the edge's resolve cache, so recovery is judged by /ready.
    deadline = time.monotonic() + 30
    while _ready(mesh)["status"] != "ready":
        assert time.monotonic() < deadline, f"{service} did not come back: {_ready(mesh)}"
        time.sleep(0.2)
    _until_ok(mesh)
    assert httpx.get(f"{mesh.base_url}/v1/models", timeout=10).status_code == 200
    assert {name: mesh.pids[name] for name in others} == others


@pytest.mark.parametrize("service", ["inference", "tokenizer"])
def test_a_hung_service_is_a_504_not_a_hang(mesh, service):
    pid = mesh.pids[service]
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        reply = _chat(mesh)
        took = time.monotonic() - started
        assert reply.status_code == 504, reply.text
        assert reply.json()["error"]["type"] == "timeout"
        assert took < DEADLINE_S + 5
        assert _ready(mesh)["services"][service]["status"] == "DEADLINE_EXCEEDED"
    finally:
        os.kill(pid, signal.SIGCONT)
    _until_ok(mesh)
    assert mesh.pids[service] == pid
