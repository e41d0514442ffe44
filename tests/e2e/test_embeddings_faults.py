"""A dead embeddings process fails embeddings requests with 503 while chat goes on, and comes back on the
same address."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import MINILM_ALIAS, SMOLLM2_ALIAS
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e


@pytest.fixture()
def own_mesh(ingot_home, smollm2_dir, minilm_dir):
    # Killing a service must not disturb the other tests' mesh.
    running = Mesh(ingot_home).start()
    yield running
    running.stop()


def test_killed_embeddings_service_is_a_503_and_restarts_on_its_address(own_mesh):
    client = openai.OpenAI(base_url=f"{own_mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    before = client.embeddings.create(model=MINILM_ALIAS, input="hello").data[0].embedding
    old_address = own_mesh.addresses["embeddings"]
    old_pid = own_mesh.kill("embeddings")
    with pytest.raises(openai.InternalServerError) as caught:
        client.embeddings.create(model=MINILM_ALIAS, input="hello")
    assert caught.value.status_code == 503 and caught.value.response.headers.get("retry-after")
    assert "embeddings" in caught.value.message
    # Chat does not depend on the embeddings service.
    assert client.chat.completions.create(model=SMOLLM2_ALIAS, messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=2).choices

    own_mesh.wait_restarted("embeddings", old_pid)
    deadline = time.monotonic() + 30
    while True:
        try:
            after = client.embeddings.create(model=MINILM_ALIAS, input="hello").data[0].embedding
            break
        except openai.InternalServerError:
            assert time.monotonic() < deadline, "embeddings did not recover after the service restarted"
            time.sleep(0.2)
    assert after == before
    assert own_mesh.addresses["embeddings"] == old_address
