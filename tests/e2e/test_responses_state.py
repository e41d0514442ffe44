"""Where stored responses live, end to end: SQLite across an edge restart, the TTL, and Redis shared by two
edge replicas. The replicas are `ingot edge` processes in front of one mesh's services, as a scaled-out
deployment runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from tests.conftest import SMOLLM2_ALIAS
from tests.e2e.mesh import Mesh
from tests.redisserver import redis_server

pytestmark = pytest.mark.e2e

KEY = "state-key"


@pytest.fixture(scope="module")
def mesh(ingot_home, smollm2_dir, tmp_path_factory):
    # The mesh's own edge is not used here; its store goes to a scratch file, never the shared home.
    scratch = tmp_path_factory.mktemp("mesh-store") / "responses.sqlite3"
    running = Mesh(ingot_home, env={"INGOT_RESPONSES_DB": str(scratch)}).start()
    yield running
    running.stop()


@contextmanager
def edge(mesh: Mesh, *flags: str) -> Iterator[openai.OpenAI]:
    """One more `ingot edge` in front of the mesh's services; yields a client of it."""
    services = [f"--{name}-address={mesh.addresses[name]}" for name in ("registry", "tokenizer", "inference",
                                                                         "embeddings")]
    process = subprocess.Popen(
        [sys.executable, "-m", "ingot.cli", "edge", "--port", "0", *services, *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "INGOT_API_KEYS": KEY},
        start_new_session=True)
    try:
        url = None
        for line in process.stdout:
            if line.startswith("ingot edge listening on "):
                url = line.split()[-1]
                break
        assert url is not None, "the edge exited before it listened"
        # Kept read, so the edge never blocks on a full pipe while it logs.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ask(client: openai.OpenAI, text: str, previous: str | None = None):
    return client.responses.create(model=SMOLLM2_ALIAS, input=text, previous_response_id=previous,
                                   max_output_tokens=8, temperature=0)


def test_the_sqlite_store_survives_an_edge_restart(mesh, tmp_path: Path):
    store = f"--responses-db={tmp_path / 'responses.sqlite3'}"
    with edge(mesh, store) as client:
        first = _ask(client, "My name is Ada.")
    with edge(mesh, store) as client:
        assert client.responses.retrieve(first.id).output_text == first.output_text
        second = _ask(client, "What is my name?", previous=first.id)
        items = client.responses.input_items.list(second.id, order="asc").data
    assert [item.type for item in items] == ["message", "message", "message"]
    assert items[0].content[0].text == "My name is Ada." and items[2].content[0].text == "What is my name?"
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


def test_a_response_is_forgotten_once_its_ttl_has_passed(mesh, tmp_path: Path):
    with edge(mesh, f"--responses-db={tmp_path / 'responses.sqlite3'}", "--responses-ttl=2") as client:
        created = _ask(client, "Hi.")
        assert client.responses.retrieve(created.id).id == created.id
        time.sleep(2.5)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(created.id)
        with pytest.raises(openai.BadRequestError) as caught:
            _ask(client, "More.", previous=created.id)
        assert caught.value.body["code"] == "previous_response_not_found"


def test_two_edges_sharing_redis_continue_each_others_conversations(mesh, tmp_path: Path):
    with redis_server(tmp_path) as url:
        with edge(mesh, f"--redis-url={url}") as one, edge(mesh, f"--redis-url={url}") as two:
            first = _ask(one, "My name is Ada.")
            second = _ask(two, "What is my name?", previous=first.id)
            third = _ask(one, "Say it again.", previous=second.id)
            assert two.responses.retrieve(third.id).previous_response_id == second.id
            items = two.responses.input_items.list(third.id, order="asc").data
            assert [item.content[0].text for item in items if item.type == "message" and item.role == "user"] == [
                "My name is Ada.", "What is my name?", "Say it again."]
            assert len(items) == 5
            one.responses.delete(first.id)
            with pytest.raises(openai.NotFoundError):
                two.responses.retrieve(first.id)
