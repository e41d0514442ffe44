"""The error middleware: every failure, whatever raised it, in OpenAI's shape with the right status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edge.shared.errors import ERROR_BODY, Failure, error_middleware
from ingot.common import errors


def _raiser(exc: BaseException):
    async def handler(request: web.Request) -> web.Response:
        raise exc

    return handler


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=[error_middleware], client_max_size=64)
    app.router.add_get("/unavailable", _raiser(errors.Unavailable("The inference service is unavailable.")))
    app.router.add_get("/not-found", _raiser(errors.NotFound("No model 'x'.", param="model",
                                                             code="model_not_found")))
    app.router.add_get("/rate", _raiser(errors.ResourceExhausted("Slow down.")))
    app.router.add_get("/bug", _raiser(RuntimeError("secret internals")))
    app.router.add_get("/ok", _raiser(web.HTTPFound("/elsewhere")))

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app.router.add_post("/echo", echo)
    azure = web.Application()
    azure[ERROR_BODY] = lambda failure: {"status": failure.status, "message": failure.message}
    azure.router.add_get("/bad", _raiser(errors.InvalidArgument("Bad.", param="temperature")))
    app.add_subapp("/azure", azure)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _error(resp) -> dict:
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_ingot_error_keeps_its_status_and_fields(client: TestClient) -> None:
    resp = await client.get("/not-found")
    assert resp.status == 404
    assert await _error(resp) == {"message": "No model 'x'.", "type": "invalid_request_error", "param": "model",
                                  "code": "model_not_found"}
    assert "Retry-After" not in resp.headers


@pytest.mark.parametrize(("path", "status", "kind"), [("/unavailable", 503, "service_unavailable"),
                                                      ("/rate", 429, "rate_limit_error")])
async def test_retryable_errors_say_when(client: TestClient, path: str, status: int, kind: str) -> None:
    resp = await client.get(path)
    assert resp.status == status
    assert resp.headers["Retry-After"] == "1"
    assert (await _error(resp))["type"] == kind


async def test_unexpected_exception_is_500_without_details(client: TestClient) -> None:
    resp = await client.get("/bug")
    assert resp.status == 500
    error = await _error(resp)
    assert error["type"] == "server_error"
    assert "secret" not in error["message"]


async def test_unknown_route_is_404(client: TestClient) -> None:
    resp = await client.post("/v1/nothing")
    assert resp.status == 404
    assert (await _error(resp))["message"] == "Invalid URL (POST /v1/nothing)."


async def test_wrong_method_is_405(client: TestClient) -> None:
    resp = await client.delete("/not-found")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert (await _error(resp))["type"] == "invalid_request_error"


async def test_body_too_large_is_413(client: TestClient) -> None:
    resp = await client.post("/echo", data=b"x" * 1000)
    assert resp.status == 413
    assert "64" in (await _error(resp))["message"]


async def test_redirects_pass_through(client: TestClient) -> None:
    resp = await client.get("/ok", allow_redirects=False)
    assert resp.status == 302


async def test_a_sub_application_chooses_its_own_shape(client: TestClient) -> None:
    resp = await client.get("/azure/bad")
    assert resp.status == 400
    assert await resp.json() == {"status": 400, "message": "Bad."}


def test_failure_from_error() -> None:
    failure = Failure.from_error(errors.Unavailable("down"))
    assert (failure.status, failure.type, failure.code, failure.retry_after) == (
        503, "service_unavailable", "service_unavailable", 1)
