"""Scale-out end to end, as an operator runs it: inference replicas on 127.0.0.2 and 127.0.0.3 behind one
`ipv4:` target of the edge, killed, restarted and added under a bounded load of streams; a second
`ingot serve` on taken ports; two edges sharing a real Redis for their limits."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import openai
import pytest

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
    replica = Process("inference", ["--listen", listen, "--registry-address", services["registry"],
                                    "--metrics-port", str(metrics_port), *AGE, *extra])
    replica.metrics_port = metrics_port
    return replica


def edge(services, inference_target: str, *extra: str) -> Process:
    port = free_port()
    process = Process("edge", ["--port", str(port), "--registry-address", services["registry"],
                               "--tokenizer-address", services["tokenizer"], "--inference-address",
                               inference_target, *extra])
    process.base_url = f"http://127.0.0.1:{port}"
    return process


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
            stream = await client.chat.completions.create(model=SMOLLM2_ALIAS, messages=PROMPT, max_tokens=40,
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
        # Calls spread over both replicas; each counts its own.
        warm = Outcomes()
        await asyncio.gather(*(one_stream(client, warm) for _ in range(6)))
        assert warm.failures == [] and warm.completed == 6
        spread = (generated(first), generated(second))
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
        await load(client, during, lambda: killed.is_set() and during.completed >= completed_at_kill + 12,
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
        print(f"spread {spread}; during the kill: {during.completed} completed ({retried:.0f} of them started "
              f"again on the other replica), {during.interrupted} cut mid-stream with an error event, "
              f"{len(during.failures)} failed; after: {after.completed} "
              f"completed, first {generated(first):.0f}, second {generated(second):.0f}, "
              f"third {generated(third):.0f} calls")
    finally:
        await client.close()
        for process in (front, first, second, third):
            if process is not None:
                process.stop()
