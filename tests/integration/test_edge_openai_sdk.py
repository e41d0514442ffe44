"""The real `openai` SDK against the edge and fake services: what its users will actually run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from aiohttp.test_utils import TestClient

from ingot.common.errors import Internal
from tests.integration.edge_fakes import CHAT_ALIAS, CHAT_ID, Mesh, Script

MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def sdk(client: TestClient) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0) as sdk:
        yield sdk


async def test_completion(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES, max_tokens=8)
    assert completion.model == CHAT_ID
    assert completion.choices[0].message.content == "Hello, world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


async def test_stream(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES, stream=True,
                                               stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello, world"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_stream_failing_midway_raises(sdk: openai.AsyncOpenAI, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_after=Internal("The engine failed."))
    stream = await sdk.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="The engine failed."):
        async for _ in stream:
            pass


async def test_unknown_model(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.param == "model"


async def test_bad_request(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES, temperature=3)
    assert caught.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES, extra_body={"service_tier": "flex"})
    assert caught.value.param == "service_tier"


async def test_models(sdk: openai.AsyncOpenAI) -> None:
    names = [model.id async for model in sdk.models.list()]
    assert CHAT_ID in names and CHAT_ALIAS in names
    assert (await sdk.models.retrieve(CHAT_ID)).id == CHAT_ID
