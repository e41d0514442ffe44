"""POST /v1/chat/completions against fake services over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from edge.app import create_app
from ingot.common.errors import Internal, InvalidArgument, NotFound
from ingot.common.v1 import common_pb2
from tests.integration.edge_fakes import CHAT_ALIAS, CHAT_ID, EMBED_ALIAS, Mesh, Script, chat_body, sse_data, sse_json

URL = "/v1/chat/completions"


async def test_answer_has_openai_shape(client: TestClient, mesh: Mesh) -> None:
    body = chat_body(messages=[{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": [{"type": "text", "text": "Say"},
                                                            {"type": "text", "text": "hello"}]}],
                     max_completion_tokens=12, temperature=0.5, top_p=0.9)
    resp = await client.post(URL, json=body)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["id"].startswith("chatcmpl-")
    assert answer["object"] == "chat.completion"
    assert isinstance(answer["created"], int)
    assert answer["model"] == CHAT_ID
    assert answer["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello, world"},
                                  "finish_reason": "stop", "logprobs": None}]
    prompt_tokens = len(mesh.inference.requests[0].prompt_token_ids)
    assert answer["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 3,
                               "total_tokens": prompt_tokens + 3}

    templated = mesh.tokenizer.requests[0]
    assert templated.model == CHAT_ID
    assert [(m.role, m.content) for m in templated.messages] == [("system", "Be brief."), ("user", "Say\nhello")]
    generate = mesh.inference.requests[0]
    assert generate.model == CHAT_ID
    assert generate.sampling.max_tokens == 12
    assert abs(generate.sampling.temperature - 0.5) < 1e-6
    assert abs(generate.sampling.top_p - 0.9) < 1e-6


async def test_unset_sampling_stays_unset(client: TestClient, mesh: Mesh) -> None:
    assert (await client.post(URL, json=chat_body())).status == 200
    sampling = mesh.inference.requests[0].sampling
    assert not any(sampling.HasField(name) for name in ("max_tokens", "temperature", "top_p"))


async def test_tool_history_reaches_the_template(client: TestClient, mesh: Mesh) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    body = chat_body(messages=[{"role": "user", "content": "Weather in Oslo?"},
                               {"role": "assistant", "content": None, "tool_calls": [call]},
                               {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"}])
    assert (await client.post(URL, json=body)).status == 200
    assistant, tool = mesh.tokenizer.requests[0].messages[1:]
    assert not assistant.HasField("content")
    assert assistant.tool_calls[0].function.arguments == '{"city": "Oslo"}'
    assert (tool.tool_call_id, tool.content) == ("call_1", "-3 C")


async def test_finish_reason_length(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(finish=common_pb2.FINISH_REASON_LENGTH)
    answer = await (await client.post(URL, json=chat_body(max_tokens=3))).json()
    assert answer["choices"][0]["finish_reason"] == "length"


async def test_stream_has_role_first_finish_last_and_done(client: TestClient) -> None:
    resp = await client.post(URL, json=chat_body(stream=True))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    data = sse_data(await resp.text())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (chunks[0]["id"], chunks[0]["created"], CHAT_ID, "chat.completion.chunk")}
    assert all("usage" not in c for c in chunks)
    choices = [c["choices"][0] for c in chunks]
    assert choices[0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["delta"]["content"] for c in choices[1:-1]] == ["Hello", ",", " world"]
    assert all(c["finish_reason"] is None for c in choices[:-1])
    assert choices[-1] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}


async def test_stream_include_usage_adds_a_usage_chunk(client: TestClient, mesh: Mesh) -> None:
    resp = await client.post(URL, json=chat_body(stream=True, stream_options={"include_usage": True}))
    data = sse_data(await resp.text())
    assert data[-1] == "[DONE]"
    *chunks, usage = sse_json(await resp.text())
    assert usage["choices"] == []
    prompt_tokens = len(mesh.inference.requests[0].prompt_token_ids)
    assert usage["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 3,
                              "total_tokens": prompt_tokens + 3}
    assert all(c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_unknown_model_is_404_on_model(client: TestClient) -> None:
    for stream in (False, True):
        resp = await client.post(URL, json=chat_body(model="no-such-model", stream=stream))
        assert resp.status == 404
        error = (await resp.json())["error"]
        assert error["param"] == "model"
        assert error["type"] == "invalid_request_error"
        assert "no-such-model" in error["message"]


async def test_inference_not_finding_the_model_is_404_on_model(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_first=NotFound("The model's files are gone."))
    resp = await client.post(URL, json=chat_body(stream=True))
    assert resp.status == 404
    assert (await resp.json())["error"]["param"] == "model"


async def test_embeddings_model_is_400_on_model(client: TestClient, mesh: Mesh) -> None:
    resp = await client.post(URL, json=chat_body(model=EMBED_ALIAS))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["param"] == "model"
    assert "embeddings model" in error["message"]
    assert mesh.tokenizer.requests == []


async def test_resolved_model_is_cached(client: TestClient, mesh: Mesh) -> None:
    for _ in range(3):
        assert (await client.post(URL, json=chat_body())).status == 200
    assert mesh.registry.resolved == [CHAT_ALIAS]


async def test_unknown_parameter_is_400_before_any_call(client: TestClient, mesh: Mesh) -> None:
    resp = await client.post(URL, json=chat_body(service_tier="flex"))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["param"] == "service_tier"
    assert error["message"] == "Unsupported parameter: 'service_tier' is not supported by this server yet."
    assert mesh.registry.resolved == []


async def test_inference_down_is_503_with_retry_after(client: TestClient, mesh: Mesh) -> None:
    await mesh.stop_service("inference")
    for stream in (False, True):
        resp = await client.post(URL, json=chat_body(stream=stream))
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert resp.content_type == "application/json"
        error = (await resp.json())["error"]
        assert error["type"] == "service_unavailable"
        assert "inference" in error["message"]


async def test_stream_failing_before_first_token_keeps_its_status(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_first=InvalidArgument("The prompt is too long.", param="messages"))
    resp = await client.post(URL, json=chat_body(stream=True))
    assert resp.status == 400
    assert await resp.json() == {"error": {"message": "The prompt is too long.", "type": "invalid_request_error",
                                           "param": "messages", "code": None}}


async def test_stream_failing_midway_sends_one_error_and_no_done(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_after=Internal("The engine failed."))
    resp = await client.post(URL, json=chat_body(stream=True))
    assert resp.status == 200
    data = sse_data(await resp.text())
    assert "[DONE]" not in data
    events = sse_json(await resp.text())
    errors = [e for e in events if "error" in e]
    assert errors == [events[-1]]
    assert errors[0]["error"]["message"] == "The engine failed."
    assert errors[0]["error"]["type"] == "server_error"
    assert all(c["choices"][0]["finish_reason"] is None for c in events[:-1])


async def test_non_streamed_failure_midway_is_an_error_status(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_after=Internal("The engine failed."))
    resp = await client.post(URL, json=chat_body())
    assert resp.status == 500
    assert (await resp.json())["error"]["message"] == "The engine failed."


async def test_client_leaving_a_stream_cancels_generation(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(pieces=["Hello"], hang=True)
    resp = await client.post(URL, json=chat_body(stream=True))
    assert resp.status == 200
    await resp.content.readuntil(b"\n\n")
    assert b"Hello" in await resp.content.readuntil(b"\n\n")
    resp.close()
    await asyncio.wait_for(mesh.inference.cancelled.wait(), 10)


async def test_client_leaving_before_the_answer_cancels_generation(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(pieces=["Hello"], hang=True)
    request = asyncio.create_task(client.post(URL, json=chat_body()))
    await asyncio.wait_for(mesh.inference.started.wait(), 10)
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    await asyncio.wait_for(mesh.inference.cancelled.wait(), 10)


async def test_failed_write_cancels_generation_without_handler_cancellation(mesh: Mesh) -> None:
    # Behind a server that does not cancel handlers, the next write to the closed connection is what notices.
    mesh.inference.script = Script(pieces=["Hello"], endless=True)
    runner = web.AppRunner(create_app(mesh.settings()), handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            resp = await session.post(f"http://127.0.0.1:{site.port}{URL}", json=chat_body(stream=True))
            await resp.content.readuntil(b"\n\n")
            resp.close()
            await asyncio.wait_for(mesh.inference.cancelled.wait(), 10)
    finally:
        await runner.cleanup()
