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
    """A 2 MB tmpfs: a real full disk. Needs root (mount); skipped elsewhere."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)
