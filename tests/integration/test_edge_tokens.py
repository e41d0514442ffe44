"""The tokenizer routes (Foundry Local's count, vLLM's /tokenize and /detokenize) against fake services."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.integration.edge_fakes import BOS, CHAT_ALIAS, CHAT_CONTEXT, CHAT_ID, Mesh, chat_body

COUNT = "/v1/chat/completions/tokenizer/encode/count"


async def test_count_is_the_prompt_tokens_a_chat_request_reports(client: TestClient, mesh: Mesh) -> None:
    body = chat_body(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}])
    resp = await client.post(COUNT, json=body)
    assert resp.status == 200
    counted = (await resp.json())["tokenCount"]
    answer = await (await client.post("/v1/chat/completions", json=body)).json()
    assert counted == answer["usage"]["prompt_tokens"] > 0
    assert len(mesh.inference.requests) == 1  # counting ran no model


async def test_count_checks_the_body_as_chat_does(client: TestClient) -> None:
    resp = await client.post(COUNT, json=chat_body(messages=[{"role": "tool", "content": "x"}]))
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "messages[0].tool_call_id"


async def test_count_of_an_unknown_model_is_404(client: TestClient) -> None:
    resp = await client.post(COUNT, json=chat_body(model="no-such-model"))
    assert resp.status == 404
    assert (await resp.json())["error"]["param"] == "model"


async def test_tokenize_a_prompt_adds_special_tokens_unless_told_not_to(client: TestClient, mesh: Mesh) -> None:
    answer = await (await client.post("/tokenize", json={"model": CHAT_ALIAS, "prompt": "a b a"})).json()
    a, b = mesh.tokenizer.words["a"], mesh.tokenizer.words["b"]
    assert answer == {"tokens": [BOS, a, b, a], "count": 4, "max_model_len": CHAT_CONTEXT}
    bare = await (await client.post("/tokenize", json={"model": CHAT_ALIAS, "prompt": "a b a",
                                                       "add_special_tokens": False})).json()
    assert bare["tokens"] == [a, b, a]


async def test_tokenize_messages_renders_the_chat_template(client: TestClient, mesh: Mesh) -> None:
    resp = await client.post("/tokenize", json={"model": CHAT_ALIAS, "messages": [{"role": "user", "content": "a b"}],
                                                "add_generation_prompt": False})
    answer = await resp.json()
    [templated] = mesh.tokenizer.requests
    assert templated.model == CHAT_ID
    assert templated.HasField("add_generation_prompt") and not templated.add_generation_prompt
    assert answer["count"] == len(answer["tokens"]) == 2


async def test_detokenize_gives_back_the_text(client: TestClient, mesh: Mesh) -> None:
    tokens = (await (await client.post("/tokenize", json={"model": CHAT_ALIAS, "prompt": "x y",
                                                          "add_special_tokens": False})).json())["tokens"]
    answer = await (await client.post("/detokenize", json={"model": CHAT_ALIAS, "tokens": tokens})).json()
    assert answer == {"prompt": "xy"}  # the fake joins words without spaces


async def test_detokenize_names_the_token_outside_the_vocabulary(client: TestClient) -> None:
    resp = await client.post("/detokenize", json={"model": CHAT_ALIAS, "tokens": [BOS, 4242]})
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "tokens[1]"


@pytest.mark.parametrize(("url", "body", "param"), [
    ("/tokenize", {"model": CHAT_ALIAS}, "prompt"),
    ("/tokenize", {"model": CHAT_ALIAS, "prompt": "a", "messages": [{"role": "user", "content": "a"}]}, "messages"),
    ("/tokenize", {"model": CHAT_ALIAS, "prompt": 5}, "prompt"),
    ("/tokenize", {"model": CHAT_ALIAS, "prompt": "a", "add_generation_prompt": True}, "add_generation_prompt"),
    ("/tokenize", {"model": CHAT_ALIAS, "messages": [{"role": "user", "content": "a"}], "add_generation_prompt": True,
                   "continue_final_message": True}, "continue_final_message"),
    ("/tokenize", {"model": CHAT_ALIAS, "messages": [{"role": "user", "content": "a"}], "add_special_tokens": True},
     "add_special_tokens"),
    ("/tokenize", {"model": CHAT_ALIAS, "prompt": "a", "return_token_strs": True}, "return_token_strs"),
    ("/detokenize", {"model": CHAT_ALIAS, "tokens": [-1]}, "tokens"),
    ("/detokenize", {"model": CHAT_ALIAS, "tokens": "1 2"}, "tokens"),
    ("/detokenize", {"tokens": [1]}, "model"),
])
async def test_bad_tokenizer_requests_are_400_naming_the_parameter(client: TestClient, url: str, body: dict,
                                                                  param: str) -> None:
    resp = await client.post(url, json=body)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["param"] == param
