"""Downloads end to end: `ingot serve --catalog-url` on a fresh home, a real HTTP catalog host, real clients.

The catalog host serves the built SmolLM2's files under other names, so the model that chats here is one
the mesh downloaded itself, not the one `make setup` built.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.catalogserver import FULL_FILES, SMALL_FILES, CatalogServer, ServedModel
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e

CHAT_NAME, CHAT_ALIAS = "SmolLM2-135M-Download-generic-cpu:1", "smollm2-download"
RESUME_NAME = "SmolLM2-135M-Resume-generic-cpu:1"
RESUME_FOLDER = "SmolLM2-135M-Resume-generic-cpu-1"
CLI_NAME, CLI_ALIAS = "SmolLM2-Files-generic-cpu:1", "smollm2-files"
CLI_FOLDER = "SmolLM2-Files-generic-cpu-1"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog_host(smollm2_dir):
    server = CatalogServer([
        ServedModel(CHAT_NAME, CHAT_ALIAS, smollm2_dir, FULL_FILES),
        ServedModel(RESUME_NAME, "smollm2-resume", smollm2_dir, FULL_FILES),
        ServedModel(CLI_NAME, CLI_ALIAS, smollm2_dir, SMALL_FILES),
    ]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fresh-home")


@pytest.fixture(scope="module")
def mesh(home, catalog_host):
    running = Mesh(home, args=["--catalog-url", catalog_host.catalog_url]).start()
    yield running
    running.stop()


def download(mesh: Mesh, name: str) -> str:
    body = {"model": {"Name": name, "ProviderType": "AzureFoundryLocal"}, "token": None, "IgnorePipeReport": True}
    with httpx.stream("POST", f"{mesh.base_url}/openai/download", json=body, timeout=300) as response:
        assert response.status_code == 200, response.read()
        return "".join(response.iter_text())


def sdk_result(body: str) -> dict:
    """foundry-local-sdk (Python): the JSON starts at the first line beginning with "{"."""
    final = ""
    for line in body.splitlines():
        if final or line.startswith("{"):
            final += line
    return json.loads(final)


def cached(mesh: Mesh) -> list[str]:
    response = httpx.get(f"{mesh.base_url}/openai/models", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_ready(mesh: Mesh, timeout: float = 30) -> None:
    """Until the edge reaches every service again (its channels back off for up to a second after a restart)."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{mesh.base_url}/ready", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the mesh did not become ready again"
        time.sleep(0.1)


def test_a_downloaded_model_chats_through_the_openai_sdk(mesh, home):
    assert CHAT_NAME not in cached(mesh)
    body = download(mesh, CHAT_NAME)
    assert re.search(r"^Total \d+\.\d\d% Downloading model\.onnx\.data$", body, re.M)
    assert sdk_result(body) == {"success": True, "errorMessage": None}
    assert CHAT_NAME in cached(mesh)
    assert (home / "models" / "IngotTests" / "SmolLM2-135M-Download-generic-cpu-1" / "model.onnx.data").is_file()
    client = openai.OpenAI(base_url=f"{mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    completion = client.chat.completions.create(
        model=CHAT_ALIAS, messages=[{"role": "user", "content": "Name three primary colors."}], max_tokens=20,
        temperature=0)
    assert completion.model == CHAT_NAME
    assert completion.choices[0].message.content.strip()
    assert completion.usage.completion_tokens > 0


def test_a_download_killed_midway_lists_no_model_then_resumes_with_range(mesh, home, catalog_host):
    held_at = 50_000_000
    catalog_host.hold_at[(RESUME_FOLDER, "model.onnx.data")] = held_at
    part = home / "models" / ".staging" / f"{RESUME_FOLDER}.partial" / "model.onnx.data.part"
    bodies: list[str] = []
    reader = threading.Thread(target=lambda: bodies.append(download(mesh, RESUME_NAME)), daemon=True)
    reader.start()
    assert catalog_host.holding.wait(120)
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size == held_at) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert part.stat().st_size == held_at
    pid = mesh.kill("registry")
    reader.join(60)
    result = sdk_result(bodies[0])
    assert result["success"] is False and "registry" in result["errorMessage"]
    catalog_host.release_all()
    mesh.wait_restarted("registry", pid)
    wait_ready(mesh)
    assert RESUME_NAME not in cached(mesh)
    assert not (home / "models" / "IngotTests" / RESUME_FOLDER).exists()
    assert sdk_result(download(mesh, RESUME_NAME)) == {"success": True, "errorMessage": None}
    ranges = [r.range for r in catalog_host.file_requests(RESUME_FOLDER, "model.onnx.data")]
    assert ranges == [None, f"bytes={held_at}-"]
    assert RESUME_NAME in cached(mesh)


def run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ingot.cli", "model", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_the_cli_download_draws_its_progress_and_list_and_rm_follow(mesh, catalog_host):
    catalog_host.holding.clear()
    catalog_host.hold_at[(CLI_FOLDER, "tokenizer.json")] = 1_000_000
    process = run_cli("download", CLI_ALIAS, "--endpoint", mesh.base_url)
    assert catalog_host.holding.wait(60)
    time.sleep(1.0)
    catalog_host.release_all()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    shown = [int(p) for p in re.findall(rf"{CLI_ALIAS}:\s+(\d+)%\|", err)]
    assert shown[-1] == 100 and any(0 < p < 100 for p in shown), err
    assert f"{CLI_ALIAS} is downloaded." in out

    listing = run_cli("list", "--endpoint", mesh.base_url)
    out, err = listing.communicate(timeout=60)
    assert listing.returncode == 0, err
    row = next(line for line in out.splitlines() if CLI_NAME in line)
    assert row.split()[0] == CLI_ALIAS and row.split()[-1] == "cached"

    removal = run_cli("rm", CLI_ALIAS, "--endpoint", mesh.base_url)
    out, err = removal.communicate(timeout=60)
    assert removal.returncode == 0, err
    assert CLI_NAME not in cached(mesh)


def test_the_cli_says_why_a_download_fails(mesh):
    process = run_cli("download", "no-such-model", "--endpoint", mesh.base_url)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "'no-such-model' is not in the catalog" in err


def test_foundry_list_fetches_the_catalog_again_only_with_refresh(mesh, catalog_host, smollm2_dir):
    def listed(query: str = "") -> set[str]:
        response = httpx.get(f"{mesh.base_url}/foundry/list{query}", timeout=120)
        assert response.status_code == 200, response.text
        return {entry["name"] for entry in response.json()}

    assert CHAT_NAME in listed()
    fetches = catalog_host.catalog_fetches
    late = ServedModel("SmolLM2-Late-generic-cpu:1", "smollm2-late", smollm2_dir, SMALL_FILES)
    catalog_host.models.append(late)
    try:
        assert late.name not in listed()
        assert catalog_host.catalog_fetches == fetches
        assert late.name in listed("?refresh=true")
        assert catalog_host.catalog_fetches == fetches + 1
    finally:
        catalog_host.models.remove(late)
