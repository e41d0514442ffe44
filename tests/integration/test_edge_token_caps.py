"""The operator's caps on prompt and output tokens, checked before any generation starts."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from edge.app import create_app
from tests.integration.edge_fakes import CHAT_ALIAS, Mesh, chat_body


async def capped(mesh: Mesh, **caps) -> TestClient:
    client = TestClient(TestServer(create_app(mesh.settings(**caps))))
    await client.start_server()
    return client


async def test_a_prompt_over_the_cap_is_a_400_naming_messages(mesh: Mesh) -> None:
    client = await capped(mesh, max_prompt_tokens=1)
    try:
        response = await client.post("/v1/chat/completions", json=chat_body())
        assert response.status == 400
        error = (await response.json())["error"]
        assert (error["param"], error["code"]) == ("messages", "prompt_too_long")
        assert not mesh.inference.started.is_set()
    finally:
        await client.close()


async def test_max_tokens_over_the_cap_is_a_400_and_unset_is_capped(mesh: Mesh) -> None:
    client = await capped(mesh, max_tokens_cap=8)
    try:
        over = await client.post("/v1/chat/completions", json=chat_body(max_tokens=9))
        assert over.status == 400
        assert (await over.json())["error"]["param"] == "max_tokens"
        within = await client.post("/v1/chat/completions", json=chat_body())
        assert within.status == 200
        assert mesh.inference.requests[-1].sampling.max_tokens == 8
        completion = await client.post("/v1/completions", json={"model": CHAT_ALIAS, "prompt": "Hi", "max_tokens": 9})
        assert completion.status == 400
        assert (await completion.json())["error"]["param"] == "max_tokens"
    finally:
        await client.close()
