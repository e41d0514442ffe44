"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edge.app import create_app
from tests.integration.edge_fakes import Mesh
from tests.integration.inference_harness import PROMPT_TEXT, serve_inference


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    fakes = Mesh()
    await fakes.start()
    try:
        yield fakes
    finally:
        await fakes.stop()


@pytest.fixture
async def client(mesh: Mesh) -> AsyncIterator[TestClient]:
    # TestServer runs the app with handler_cancellation=True, as `ingot edge` does.
    async with TestClient(TestServer(create_app(mesh.settings()))) as test_client:
        yield test_client


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MB tmpfs: a real full disk. Needs root (mount); skipped elsewhere, saying so."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip(f"needs root: the full-disk test mounts a 2 MB tmpfs (running as uid {os.geteuid()})")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs root allowed to mount: mounting a 2 MB tmpfs failed ({mounted.stderr.strip()})")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture()
async def inference(smollm2_dir):
    """The inference service with room for 2 active and 1 waiting sequence."""
    async with serve_inference(smollm2_dir, max_active_sequences=2, max_waiting_sequences=1) as stub:
        yield stub


@pytest.fixture(scope="module")
def prompt_ids(smollm2_dir) -> list[int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json")).encode(PROMPT_TEXT, add_special_tokens=False).ids
