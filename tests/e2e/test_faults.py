"""Faults: a dead inference process fails its requests with 503 and the mesh recovers; a client that
goes away stops its generation."""

from __future__ import annotations

import os
import time

import httpx
import openai
import pytest

from ingot.inference.v1 import inference_service_pb2 as inference_pb
from tests.conftest import SMOLLM2_ALIAS, SMOLLM2_ID
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e

STORY = [{"role": "user", "content": "Write a very long story about a dragon who learns to paint."}]


def _loaded(stub):
    models = stub.ListLoadedModels(inference_pb.ListLoadedModelsRequest(), timeout=10).models
    return next(m for m in models if m.id == SMOLLM2_ID)


def test_disconnected_stream_stops_its_generation(client, inference_stub):
    stream = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=STORY, max_tokens=1500,
                                            temperature=0.8, stream=True)
    received = 0
    for chunk in stream:
        received += 1
        if received == 5:
            break
    before = _loaded(inference_stub)
    assert before.active_sequences == 1
    stream.close()
    deadline = time.monotonic() + 10
    while _loaded(inference_stub).active_sequences and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = _loaded(inference_stub)
    assert stopped.active_sequences == 0
    # Had generation gone on to max_tokens it would have produced ~1500 tokens; it stopped near the cut.
    time.sleep(0.5)
    assert _loaded(inference_stub).generated_tokens == stopped.generated_tokens
    assert stopped.generated_tokens - before.generated_tokens < 200


@pytest.fixture()
def own_mesh(ingot_home, smollm2_dir):
    # Killing services must not disturb the other tests' mesh.
    running = Mesh(ingot_home).start()
    yield running
    running.stop()


def test_killed_inference_fails_with_503_and_the_mesh_recovers(own_mesh):
    client = openai.OpenAI(base_url=f"{own_mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    client.chat.completions.create(model=SMOLLM2_ALIAS, messages=STORY, max_tokens=2)

    stream = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=STORY, max_tokens=1500, stream=True)
    next(iter(stream))
    old_address = own_mesh.addresses["inference"]
    old_pid = own_mesh.kill("inference")
    # A stream that had started ends with an error event, never like a normal finish.
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    # While the launcher waits to restart it, new requests fail fast with 503 and the edge stays up.
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=SMOLLM2_ALIAS, messages=STORY, max_tokens=2)
    assert caught.value.status_code == 503
    assert caught.value.response.headers.get("retry-after")
    assert httpx.get(f"{own_mesh.base_url}/health").status_code == 200
    assert client.models.list().data

    own_mesh.wait_restarted("inference", old_pid)
    deadline = time.monotonic() + 30
    while True:
        try:
            completion = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=STORY, max_tokens=5)
            break
        except openai.InternalServerError:
            assert time.monotonic() < deadline, "the mesh did not recover after inference restarted"
            time.sleep(0.2)
    assert completion.usage.completion_tokens == 5
    # The restarted process took the same address, so nothing else had to be told about it.
    assert own_mesh.addresses["inference"] == old_address


def test_launcher_stops_every_child_on_sigterm(own_mesh):
    pids = dict(own_mesh.pids)
    assert own_mesh.stop() == 0
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
