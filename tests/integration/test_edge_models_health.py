"""GET /v1/models, /health and /ready against fake services over real gRPC."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from grpc_health.v1 import health_pb2

from edge.app import create_app
from tests.integration.edge_fakes import CHAT_ALIAS, CHAT_ID, CREATED, EMBED_ALIAS, EMBED_ID, Mesh


async def test_models_lists_full_names_and_aliases(client: TestClient) -> None:
    resp = await client.get("/v1/models")
    assert resp.status == 200
    listing = await resp.json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == [CHAT_ID, CHAT_ALIAS, EMBED_ID, EMBED_ALIAS]
    assert listing["data"][1] == {"id": CHAT_ALIAS, "object": "model", "created": CREATED,
                                  "owned_by": "HuggingFaceTB"}


async def test_one_model_by_alias_or_full_name(client: TestClient) -> None:
    for name in (CHAT_ALIAS, CHAT_ID):
        resp = await client.get(f"/v1/models/{name}")
        assert resp.status == 200
        assert (await resp.json())["id"] == name


async def test_unknown_model_is_404(client: TestClient) -> None:
    resp = await client.get("/v1/models/nope")
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert (error["param"], error["code"], error["type"]) == ("model", "model_not_found", "invalid_request_error")


async def test_health_answers_without_services(client: TestClient, mesh: Mesh) -> None:
    for name in ("tokenizer", "registry", "inference"):
        await mesh.stop_service(name)
    resp = await client.get("/health")
    assert (resp.status, await resp.json()) == (200, {"status": "ok"})


async def test_ready_when_every_service_serves(client: TestClient, mesh: Mesh) -> None:
    resp = await client.get("/ready")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready", "services": {
        name: {"address": mesh.addresses[name], "status": "SERVING"}
        for name in ("tokenizer", "registry", "inference")}}


async def test_not_ready_names_each_failing_service(client: TestClient, mesh: Mesh) -> None:
    await mesh.hosts["tokenizer"].health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await mesh.stop_service("inference")
    resp = await client.get("/ready")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    report = await resp.json()
    assert report["status"] == "not_ready"
    assert {name: s["status"] for name, s in report["services"].items()} == {
        "tokenizer": "NOT_SERVING", "registry": "SERVING", "inference": "UNAVAILABLE"}


async def test_ready_lists_embeddings_once_configured(mesh: Mesh) -> None:
    # Nothing listens at the embeddings address yet: the service is listed and holds readiness back.
    app = create_app(mesh.settings(embeddings_address=mesh.addresses["registry"].rsplit(":", 1)[0] + ":1"))
    async with TestClient(TestServer(app)) as test_client:
        resp = await test_client.get("/ready")
        assert resp.status == 503
        assert (await resp.json())["services"]["embeddings"]["status"] == "UNAVAILABLE"
