"""Scale-out end to end, as an operator runs it: inference replicas on 127.0.0.2 and 127.0.0.3 behind one
`ipv4:` target of the edge, killed, restarted and added under a bounded load of streams; a second
`ingot serve` on taken ports; two edges sharing a real Redis for their limits."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import openai
import pytest
import redis

from tests.conftest import SMOLLM2_ALIAS, SMOLLM2_ID
from tests.e2e.mesh import Mesh, free_port
from tests.e2e.processes import Process, metric, port_free_on
from tests.redisserver import redis_server

pytestmark = pytest.mark.e2e

GENERATE = "/ingot.inference.v1.InferenceService/Generate"
# Short, so the test sees clients reconnect; the grace outlives every stream here, so ageing cuts none.
AGE = ["--max-connection-age", "2", "--max-connection-age-grace", "60"]
PROMPT = [{"role": "user", "content": "Count from one to twenty in words."}]
STREAM_TIMEOUT_S = 90
INTERRUPTED = "went away after it had started"


@pytest.fixture(scope="module")
def services(tmp_path_factory, ingot_home, smollm2_dir):
    folder = tmp_path_factory.mktemp("scaleout")
    deployments = folder / "deployments.json"
    deployments.write_text(json.dumps({"deployments": [
        {"name": "limited", "model": SMOLLM2_ALIAS, "requests_per_minute": 4, "parameters": {"max_tokens": 1}}]}))
    registry = Process("registry", ["--listen", "127.0.0.1:0", "--deployments", str(deployments)],
                       home=ingot_home).start()
    tokenizer = Process("tokenizer", ["--listen", "127.0.0.1:0", "--registry-address", registry.address]).start()
    yield {"registry": registry.address, "tokenizer": tokenizer.address}
    tokenizer.stop()
    registry.stop()


def inference(services, listen: str, *extra: str) -> Process:
    metrics_port = free_port()
    return Process("inference", ["--listen", listen, "--registry-address", services["registry"],
                                 "--metrics-port", str(metrics_port), *AGE, *extra], metrics_port=metrics_port)


def edge(services, inference_target: str, *extra: str) -> Process:
    port = free_port()
    return Process("edge", ["--port", str(port), "--registry-address", services["registry"],
                            "--tokenizer-address", services["tokenizer"], "--inference-address", inference_target,
                            *extra], base_url=f"http://127.0.0.1:{port}")


def metric_of_edge(process: Process, name: str) -> float:
    text = httpx.get(f"{process.base_url}/metrics", timeout=10).text
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(name))


def generated(replica: Process) -> float:
    return metric(replica.metrics_port, "ingot_rpc_requests_total", method=GENERATE)


@dataclass
class Outcomes:
    completed: int = 0
    # Cut mid-stream by a lost replica, with the error event that says so.
    interrupted: int = 0
    # Anything else: a stream that hung, failed before it started, or ended without a clear error.
    failures: list[str] = field(default_factory=list)
    # Streams that have sent something and not finished yet.
    streaming: int = 0


async def one_stream(client: openai.AsyncOpenAI, outcomes: Outcomes) -> None:
    chunks = 0
    try:
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            stream = await client.chat.completions.create(model=SMOLLM2_ALIAS, messages=PROMPT, max_tokens=24,
                                                          temperature=0, stream=True)
            finished = None
            try:
                async for chunk in stream:
                    if chunks == 0:
                        outcomes.streaming += 1
                    chunks += 1
                    if chunk.choices and chunk.choices[0].finish_reason:
                        finished = chunk.choices[0].finish_reason
            finally:
                if chunks:
                    outcomes.streaming -= 1
    except TimeoutError:
        outcomes.failures.append(f"hung after {chunks} chunks")
        return
    except openai.APIStatusError as error:
        outcomes.failures.append(f"HTTP {error.status_code} after {chunks} chunks: {error.message}")
        return
    except openai.APIError as error:
        if chunks and INTERRUPTED in str(error.message):
            outcomes.interrupted += 1
        else:
            outcomes.failures.append(f"{type(error).__name__} after {chunks} chunks: {error.message}")
        return
    if finished is None:
        outcomes.failures.append(f"ended without a finish reason after {chunks} chunks")
    else:
        outcomes.completed += 1


async def load(client: openai.AsyncOpenAI, outcomes: Outcomes, until, *, concurrency: int = 6,
               limit_s: float = 60) -> None:
    """`concurrency` streams at a time, each followed by the next, until `until()` holds."""
    deadline = time.monotonic() + limit_s

    async def worker() -> None:
        while not until() and time.monotonic() < deadline:
            await one_stream(client, outcomes)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    assert until(), "the load ran out of time before what it waited for happened"


async def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def test_replicas_share_the_calls_lose_no_request_silently_and_new_ones_get_traffic(services, smollm2_dir):
    port = port_free_on(["127.0.0.2", "127.0.0.3"])
    # Two sequences at a time: the others routed here wait, admitted but not started, so the kill below finds
    # requests that must be started again on the other replica.
    first = inference(services, f"127.0.0.2:{port}", "--max-active-sequences", "2").start()
    # Started with --reuse-port so that a replica added later can share its address.
    second = inference(services, f"127.0.0.3:{port}", "--reuse-port").start()
    third = None
    front = edge(services, f"ipv4:127.0.0.2:{port},127.0.0.3:{port}").start()
    client = openai.AsyncOpenAI(base_url=f"{front.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    try:
        # Calls spread over both replicas; each counts its own. Until the edge has connected to both (and each
        # has loaded the model), the one it reached first takes everything.
        warm = Outcomes()
        await load(client, warm, lambda: generated(first) >= 1 and generated(second) >= 1, concurrency=2,
                   limit_s=60)
        before = (generated(first), generated(second))
        batch = Outcomes()
        await asyncio.gather(*(one_stream(client, batch) for _ in range(8)))
        assert warm.failures == [] and batch.failures == [] and batch.completed == 8
        spread = (generated(first) - before[0], generated(second) - before[1])
        assert spread[0] >= 2 and spread[1] >= 2, spread
        ready = httpx.get(f"{front.base_url}/ready", timeout=10)
        assert ready.status_code == 200
        assert set(ready.json()["services"]["inference"]["replicas"].values()) == {"SERVING"}
        placement = httpx.get(f"{front.base_url}/openai/loadedmodels", params={"by_replica": "true"},
                              timeout=10).json()["replicas"]
        assert {entry["address"]: entry["models"] for entry in placement} == {
            f"127.0.0.2:{port}": [SMOLLM2_ID], f"127.0.0.3:{port}": [SMOLLM2_ID]}
        assert metric(first.metrics_port, "ingot_inference_model_loaded", model=SMOLLM2_ID) == 1

        # SIGKILL one replica while streams run on both.
        during = Outcomes()
        killed = asyncio.Event()

        completed_at_kill = 0

        async def kill_mid_load() -> None:
            nonlocal completed_at_kill
            while during.streaming < 4:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(first.kill)
            completed_at_kill = during.completed
            killed.set()

        killer = asyncio.create_task(kill_mid_load())
        await load(client, during, lambda: killed.is_set() and during.completed >= completed_at_kill + 8,
                   concurrency=8)
        await killer
        assert during.failures == [], during.failures
        assert during.interrupted >= 1, "no stream was cut: the kill did not land mid-stream"
        retried = metric_of_edge(front, "ingot_generate_retries_total")
        assert retried >= 1, "no request was waiting on the killed replica"
        ready = httpx.get(f"{front.base_url}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["services"]["inference"]["replicas"][f"127.0.0.2:{port}"] == "UNAVAILABLE"

        # Restarted on its address, it gets traffic again.
        first = inference(services, f"127.0.0.2:{port}").start()
        after = Outcomes()
        await load(client, after, lambda: generated(first) >= 2, limit_s=30)
        # A third replica sharing the second one's address gets traffic once the edge's connection there
        # ages and reconnects (the kernel hands each new connection to one of the two).
        third = inference(services, f"127.0.0.3:{port}", "--reuse-port").start()
        await load(client, after, lambda: generated(third) >= 1, limit_s=40)
        assert after.failures == [], after.failures
        print(f"8 concurrent streams spread {spread[0]:.0f}/{spread[1]:.0f}; during the kill: {during.completed} completed ({retried:.0f} of them started "
              f"again on the other replica), {during.interrupted} cut mid-stream with an error event, "
              f"{len(during.failures)} failed; after: {after.completed} "
              f"completed, first {generated(first):.0f}, second {generated(second):.0f}, "
              f"third {generated(third):.0f} calls")
    finally:
        await client.close()
        for process in (front, first, second, third):
            if process is not None:
                process.stop()


def test_a_second_serve_on_taken_ports_exits_clearly_and_the_first_keeps_serving(ingot_home, smollm2_dir):
    ports = {name: free_port() for name in ("registry", "tokenizer", "inference", "embeddings")}
    listens = [item for name, port in ports.items() for item in (f"--{name}-listen", f"127.0.0.1:{port}")]
    first = Mesh(ingot_home, args=listens).start()
    try:
        second = subprocess.run([sys.executable, "-m", "ingot.cli", "serve", "--port", str(first.port), *listens],
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "INGOT_HOME": str(ingot_home)})
        output = second.stdout + second.stderr
        assert second.returncode != 0, output
        assert f"cannot listen on 127.0.0.1:{ports['registry']}: the address is already in use" in output, output
        assert first.process.poll() is None
        assert httpx.get(f"{first.base_url}/ready", timeout=10).status_code == 200
        models = httpx.get(f"{first.base_url}/foundry/list", timeout=30)
        assert models.status_code == 200
        # A service started alone on a taken address says the same, and exits at once.
        alone = subprocess.run([sys.executable, "-m", "ingot.cli", "tokenizer", "--listen",
                                f"127.0.0.1:{ports['tokenizer']}"], capture_output=True, text=True, timeout=60)
        assert alone.returncode == 1
        assert "already in use by another process" in alone.stderr
    finally:
        first.stop()


@pytest.fixture(scope="module")
def one_inference(services):
    replica = inference(services, "127.0.0.1:0").start()
    yield replica.address
    replica.stop()


@pytest.fixture()
def two_edges(services, one_inference, tmp_path):
    """Two edge replicas in front of one inference service, sharing a real Redis, one request per key at a
    time."""
    with redis_server(tmp_path) as url:
        shared = ["--redis-url", url, "--max-concurrent-per-key", "1"]
        edges = [edge(services, one_inference, *shared).start() for _ in range(2)]
        try:
            yield edges, url
        finally:
            for process in edges:
                process.stop()


def limited(front: Process) -> httpx.Response:
    return httpx.post(f"{front.base_url}/v1/chat/completions", timeout=60,
                      json={"model": "limited", "messages": [{"role": "user", "content": "hi"}]})


def hold_a_request(front: Process) -> socket.socket:
    """A POST whose body never finishes arriving: in flight on that edge until the socket closes."""
    host, port = front.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{")
    return sock


def test_two_edges_share_a_deployments_rate_limit_and_fall_back_when_redis_goes(two_edges, tmp_path):
    (first, second), url = two_edges
    statuses = [limited(front) for front in (first, second, first, second, first, second)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 200, 429, 429], [r.text for r in statuses]
    for refused in statuses[4:]:
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "rate limit of 4 per minute" in refused.json()["error"]["message"]

    # Redis goes away: no request fails for it; each edge counts on its own (two admitted here each, so two
    # more each before its own window is full).
    try:
        redis.Redis.from_url(url).shutdown(nosave=True)
    except redis.ConnectionError:
        pass
    after = [limited(front) for front in (first, first, first, second)]
    assert [r.status_code for r in after] == [200, 200, 429, 200], [r.text for r in after]
    assert int(after[2].headers["Retry-After"]) >= 1
    for front in (first, second):
        front.wait_for(lambda front=front: "is unreachable" in front.output(), 10, "the warning that Redis is gone")
        assert front.output().count("is unreachable") == 1


def test_two_edges_share_per_key_concurrency(two_edges):
    (first, second), _ = two_edges
    held = hold_a_request(first)
    try:
        time.sleep(0.5)
        refused = httpx.post(f"{second.base_url}/v1/chat/completions", json={}, timeout=30)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_concurrent_requests"
    finally:
        held.close()
    deadline = time.monotonic() + 10
    while (answer := httpx.post(f"{second.base_url}/v1/chat/completions", json={}, timeout=30)).status_code == 429:
        assert time.monotonic() < deadline, "the held request's slot was never freed"
        time.sleep(0.2)
    # Admitted: the empty body is refused for what it is, not for the limit.
    assert answer.status_code == 400
