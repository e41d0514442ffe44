"""Bring your own GGUF end to end: `ingot serve` on a fresh home, `ingot model import`, then real clients.

The GGUF is a tiny random llama written by the test (tests/ggufmodels.py): the chat checks the plumbing
(the import lands, is listed, loads, and answers through the OpenAI client), not what the junk model says.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.mesh import Mesh
from tests.ggufmodels import TinySpec, write_tiny_gguf

pytestmark = pytest.mark.e2e

NAME, ALIAS = "Tiny-Gguf-generic-cpu:1", "tiny-gguf"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    # Every test's tmp_path lies under the session's base folder: the one folder imports may read.
    allowed = tmp_path_factory.getbasetemp()
    running = Mesh(tmp_path_factory.mktemp("import-home"), args=["--import-dirs", str(allowed)]).start()
    yield running
    running.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingot.cli", "model", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=300)


def test_the_cli_imports_a_gguf_that_the_openai_client_then_chats_with(mesh, tmp_path):
    gguf = write_tiny_gguf(tmp_path / "tiny.Q4_0.gguf", TinySpec())
    done = run_cli("import", str(gguf), "--name", NAME, "--alias", ALIAS, "--endpoint", mesh.base_url)
    assert done.returncode == 0, done.stderr
    shown = [int(p) for p in re.findall(r"tiny\.Q4_0\.gguf:\s+(\d+)%\|", done.stderr)]
    assert shown and shown[-1] == 100, done.stderr
    assert f"{NAME} is imported" in done.stdout
    assert NAME in httpx.get(f"{mesh.base_url}/openai/models", timeout=30).json()

    client = openai.OpenAI(base_url=f"{mesh.base_url}/v1", api_key="unused")
    reply = client.chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": "hello world"}],
                                           max_tokens=5, temperature=0)
    assert reply.model in (NAME, ALIAS)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 1 <= reply.usage.completion_tokens <= 5


def test_an_import_the_server_cannot_do_answers_with_the_reason(mesh, tmp_path):
    gemma = write_tiny_gguf(tmp_path / "gemma.gguf", TinySpec(architecture="gemma3"))
    response = httpx.post(f"{mesh.base_url}/openai/import", json={"path": str(gemma)}, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "path" and "gemma3" in response.json()["error"]["message"]

    response = httpx.post(f"{mesh.base_url}/openai/import", json={"path": str(tmp_path / "none.gguf")}, timeout=60)
    assert response.status_code == 404 and response.json()["error"]["param"] == "path"

    response = httpx.post(f"{mesh.base_url}/openai/import", json={"path": str(gemma), "precision": "q4"}, timeout=60)
    assert response.status_code == 400 and response.json()["error"]["param"] == "precision"

    failed = run_cli("import", str(gemma), "--endpoint", mesh.base_url)
    assert failed.returncode == 1 and "gemma3" in failed.stderr


def test_an_import_from_outside_the_allowed_folders_is_forbidden(mesh, tmp_path):
    outside = Path("/etc/passwd")
    response = httpx.post(f"{mesh.base_url}/openai/import", json={"path": str(outside)}, timeout=60)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["param"] == "path" and "--import-dirs" in response.json()["error"]["message"]
