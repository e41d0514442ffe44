"""Foundry Local's loading routes against the real mesh: load, unload, TTL, execution provider, device."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from ingot.inference.v1 import inference_service_pb2 as pb
from services.inference.models import available_providers
from tests.conftest import SMOLLM2_ALIAS, SMOLLM2_ID

pytestmark = pytest.mark.e2e


def loaded(mesh) -> list[str]:
    response = httpx.get(f"{mesh.base_url}/openai/loadedmodels", timeout=30)
    assert response.status_code == 200
    return response.json()


def test_load_and_unload_show_in_loadedmodels(mesh):
    assert httpx.get(f"{mesh.base_url}/openai/load/{SMOLLM2_ALIAS}", timeout=120).status_code == 200
    assert SMOLLM2_ID in loaded(mesh)
    response = httpx.get(f"{mesh.base_url}/openai/unload/{SMOLLM2_ID}?force=true", timeout=30)
    assert response.status_code == 200
    assert SMOLLM2_ID not in loaded(mesh)
    # Unloading what is not loaded is already done; a chat request then loads the model again.
    assert httpx.get(f"{mesh.base_url}/openai/unload/{SMOLLM2_ID}", timeout=30).status_code == 200


def test_a_chat_request_loads_a_cached_model_that_is_not_loaded(mesh, client):
    httpx.get(f"{mesh.base_url}/openai/unloadall", timeout=30).raise_for_status()
    assert loaded(mesh) == []
    completion = client.chat.completions.create(model=SMOLLM2_ALIAS, max_tokens=2,
                                                messages=[{"role": "user", "content": "Hi"}])
    assert completion.usage.completion_tokens == 2
    assert loaded(mesh) == [SMOLLM2_ID]


def test_a_loaded_model_expires_after_its_ttl(mesh):
    assert httpx.get(f"{mesh.base_url}/openai/load/{SMOLLM2_ALIAS}?ttl=1", timeout=120).status_code == 200
    deadline = time.monotonic() + 10
    while SMOLLM2_ID in loaded(mesh) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert SMOLLM2_ID not in loaded(mesh)


def test_a_chat_ttl_keeps_the_model_that_long(mesh, client, inference_stub):
    client.chat.completions.create(model=SMOLLM2_ALIAS, max_tokens=1, messages=[{"role": "user", "content": "Hi"}],
                                   extra_body={"ttl": 7200})
    models = inference_stub.ListLoadedModels(pb.ListLoadedModelsRequest(), timeout=10).models
    assert [m.ttl_seconds for m in models if m.id == SMOLLM2_ID] == [7200]


def test_unknown_model_load_is_404_naming_it(mesh):
    response = httpx.get(f"{mesh.base_url}/openai/load/no-such-model", timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"
    assert "no-such-model" in response.json()["error"]["message"]


def test_an_execution_provider_this_host_lacks_is_a_400_naming_the_available_ones(mesh, client):
    response = httpx.get(f"{mesh.base_url}/openai/load/{SMOLLM2_ALIAS}?ep=qnn", timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "ep"
    assert "cpu" in response.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=SMOLLM2_ALIAS, max_tokens=1, extra_body={"ep": "qnn"},
                                       messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["param"] == "ep"


def test_bad_load_parameters_are_400s(mesh):
    for query, param in (("ttl=soon", "ttl"), ("unload=maybe", "unload")):
        response = httpx.get(f"{mesh.base_url}/openai/load/{SMOLLM2_ALIAS}?{query}", timeout=30)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param


def test_the_gpu_device_can_be_set_only_where_there_is_a_gpu(mesh):
    assert httpx.get(f"{mesh.base_url}/openai/getgpudevice", timeout=30).json() == 0
    response = httpx.get(f"{mesh.base_url}/openai/setgpudevice/1", timeout=30)
    if "cuda" in available_providers():
        assert response.status_code == 200
        assert httpx.get(f"{mesh.base_url}/openai/getgpudevice", timeout=30).json() == 1
        return
    assert response.status_code == 400
    assert "no GPU" in response.json()["error"]["message"]


def loaded_ttl(inference_stub) -> list[int]:
    models = inference_stub.ListLoadedModels(pb.ListLoadedModelsRequest(), timeout=10).models
    return [m.ttl_seconds for m in models if m.id == SMOLLM2_ID]


@pytest.mark.parametrize(("query", "ttl"), [("timeout=1234", 1234), ("unload=false", 0), ("ttl=99&unload=false", 99)],
                         ids=["old-timeout-is-ttl", "unload-false-keeps-it-for-good", "ttl-wins"])
def test_load_reads_older_clients_timeout_and_unload_false_keeps_the_model(mesh, inference_stub, query, ttl):
    httpx.get(f"{mesh.base_url}/openai/unloadall", timeout=30).raise_for_status()
    assert httpx.get(f"{mesh.base_url}/openai/load/{SMOLLM2_ALIAS}?{query}", timeout=120).status_code == 200
    assert loaded_ttl(inference_stub) == [ttl]


def test_unloading_a_generating_model_needs_force_which_fails_its_request_with_503(mesh, client, inference_stub):
    httpx.get(f"{mesh.base_url}/openai/load/{SMOLLM2_ALIAS}", timeout=120).raise_for_status()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(client.chat.completions.create, model=SMOLLM2_ALIAS, max_tokens=1500, temperature=0,
                           messages=[{"role": "user", "content": "Tell me a very long story about a dragon."}])
        deadline = time.monotonic() + 60
        while not any(m.active_sequences for m in inference_stub.ListLoadedModels(
                pb.ListLoadedModelsRequest(), timeout=10).models):
            assert time.monotonic() < deadline and not busy.done(), "the request never started generating"
            time.sleep(0.05)
        refused = httpx.get(f"{mesh.base_url}/openai/unload/{SMOLLM2_ID}", timeout=30)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"
        assert "force" in refused.json()["error"]["message"]
        assert SMOLLM2_ID in loaded(mesh)
        assert httpx.get(f"{mesh.base_url}/openai/unload/{SMOLLM2_ID}?force=true", timeout=30).status_code == 200
        with pytest.raises(openai.APIStatusError) as caught:
            busy.result(timeout=60)
    assert caught.value.status_code == 503
    assert SMOLLM2_ID not in loaded(mesh)


def test_the_model_cli_loads_with_a_ttl_and_unloads(mesh, inference_stub):
    def model_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ingot.cli", "model", *args, "--endpoint", mesh.base_url],
                              capture_output=True, text=True, timeout=120)

    httpx.get(f"{mesh.base_url}/openai/unloadall", timeout=30).raise_for_status()
    done = model_cli("load", SMOLLM2_ALIAS, "--ttl", "4321")
    assert done.returncode == 0, done.stderr
    assert loaded_ttl(inference_stub) == [4321]
    done = model_cli("unload", SMOLLM2_ALIAS)
    assert done.returncode == 0, done.stderr
    assert SMOLLM2_ID not in loaded(mesh)
    done = model_cli("load", "no-such-model")
    assert done.returncode == 1 and "no-such-model" in done.stderr
