"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
