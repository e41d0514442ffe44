"""SIGTERM to the launcher: new requests get 503, streams in flight finish, then everything stops in order."""

from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import pytest

from tests.conftest import SMOLLM2_ALIAS
from tests.e2e.mesh import Mesh

pytestmark = pytest.mark.e2e

STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to paint."}]


def test_sigterm_drains_the_streams_in_flight_and_turns_new_requests_away(ingot_home, smollm2_dir):
    mesh = Mesh(ingot_home).start()
    try:
        client = openai.OpenAI(base_url=f"{mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
        stream = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=STORY, max_tokens=120,
                                                temperature=0, stream=True)
        chunks = iter(stream)
        next(chunks)
        pids = dict(mesh.pids)
        os.kill(mesh.process.pid, signal.SIGTERM)
        refused = None
        deadline = time.monotonic() + 10
        while refused is None and time.monotonic() < deadline:
            response = httpx.post(f"{mesh.base_url}/v1/chat/completions", timeout=30,
                                  json={"model": SMOLLM2_ALIAS, "messages": STORY, "max_tokens": 1})
            if response.status_code == 503:
                refused = response
        assert refused is not None, "no request was turned away while draining"
        assert refused.headers.get("retry-after")
        assert refused.json()["error"]["code"] == "shutting_down"
        assert httpx.get(f"{mesh.base_url}/health", timeout=10).status_code == 200
        rest = list(chunks)
        # The stream that was in flight ended normally, not cut off.
        assert rest[-1].choices[0].finish_reason in ("stop", "length")
        assert mesh.process.wait(60) == 0
        for pid in pids.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        mesh.stop()
