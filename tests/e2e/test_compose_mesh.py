"""deploy/: the image built here and the compose mesh started from it, called with the openai SDK through the
containerised edge; a container killed while loading a model comes back; everything is torn down after.

Heavy (an image build on a cold cache, five containers), so `make test` runs it only when what goes into the
image changed since its last green run (tests/e2e/compose.py says how that is decided); `make deploy-test`
always runs it.
"""

from __future__ import annotations

import os
import signal
import threading

import httpx
import openai
import pytest

from tests.e2e.compose import SERVICES, ComposeMesh, build_image, docker_daemon, inputs_hash, stamp_path, why_not_run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def compose_mesh(request, tmp_path_factory):
    reason = why_not_run()
    if reason is not None:
        pytest.skip(reason)
    if not (os.path.exists("/usr/bin/docker") or os.path.exists("/usr/local/bin/docker")):
        pytest.fail("docker is not installed: `make system-packages` installs docker.io and docker-compose")
    key = inputs_hash()
    failed_before = request.session.testsfailed
    with docker_daemon(tmp_path_factory.mktemp("docker")):
        mesh = ComposeMesh(build_image())
        try:
            mesh.up()
            mesh.wait_healthy("edge")
            yield mesh
        finally:
            mesh.down()
            leftovers = mesh.leftovers()
        assert not leftovers, f"compose down left {leftovers}"
    if request.session.testsfailed == failed_before:
        stamp_path().parent.mkdir(parents=True, exist_ok=True)
        stamp_path().write_text(key + "\n")


@pytest.fixture(scope="module")
def client(compose_mesh) -> openai.OpenAI:
    # CPU is shared on test hosts: a first answer includes loading the model.
    return openai.OpenAI(base_url=f"{compose_mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=600)


def test_the_openai_sdk_gets_a_chat_answer_and_an_embedding_through_the_containerised_edge(compose_mesh, client):
    chat = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Say hello."}],
                                          max_tokens=12, temperature=0)
    assert chat.choices[0].message.content.strip()
    assert chat.usage.completion_tokens > 0
    embedding = client.embeddings.create(model=EMBEDDING_MODEL, input=["a container", "a pod"])
    assert [len(item.embedding) for item in embedding.data] == [384, 384]
    ready = httpx.get(f"{compose_mesh.base_url}/ready", timeout=30).json()
    assert ready["status"] == "ready" and set(ready["services"]) == {"tokenizer", "registry", "inference", "embeddings"}


def test_every_container_runs_as_the_image_user_on_a_read_only_root_without_capabilities(compose_mesh):
    for service in SERVICES:
        state = compose_mesh.container(service)
        assert state["Config"]["User"] == "10001:10001", service
        assert state["HostConfig"]["ReadonlyRootfs"] is True, service
        assert state["HostConfig"]["CapDrop"] == ["ALL"], service
        assert state["HostConfig"]["NetworkMode"] == "host", service


def test_an_inference_container_killed_while_loading_a_model_comes_back(compose_mesh, client):
    base = compose_mesh.base_url
    httpx.get(f"{base}/openai/unload/{CHAT_MODEL}", timeout=120)
    before = compose_mesh.container("inference")
    loading: dict[str, object] = {}

    def load() -> None:
        try:
            loading["status"] = httpx.get(f"{base}/openai/load/{CHAT_MODEL}", timeout=300).status_code
        except httpx.HTTPError as err:
            loading["status"] = repr(err)

    loader = threading.Thread(target=load)
    loader.start()
    # Kill the container's process the way an OOM kill does; compose's restart policy must bring it back.
    threading.Event().wait(0.3)
    os.kill(before["State"]["Pid"], signal.SIGKILL)
    loader.join(timeout=330)
    assert not loader.is_alive()
    after = compose_mesh.wait_healthy("inference", restarted=True)
    assert after["RestartCount"] > before["RestartCount"]
    assert after["State"]["Pid"] != before["State"]["Pid"]
    compose_mesh.wait_healthy("edge")
    chat = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=8, temperature=0)
    assert chat.choices[0].message.content.strip()
    for service in ("registry", "tokenizer", "embeddings", "edge"):
        assert compose_mesh.container(service)["RestartCount"] == 0, service
