"""Bad input gets OpenAI's error JSON with the right status and the parameter named."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import SMOLLM2_ALIAS

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Hello"}]


def test_unknown_model_is_openai_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=5)
    error = caught.value.body
    assert error["param"] == "model"
    assert "no-such-model" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": SMOLLM2_ALIAS}, "messages"),
        ({"model": SMOLLM2_ALIAS, "messages": []}, "messages"),
        ({"model": SMOLLM2_ALIAS, "messages": "Hello"}, "messages"),
        ({"model": SMOLLM2_ALIAS, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "max_tokens": "ten"}, "max_tokens"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "temperature": 3}, "temperature"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "top_p": 0}, "top_p"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "service_tier": "flex"}, "service_tier"),
        ({"messages": HELLO}, "model"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "presence_penalty": 3}, "presence_penalty"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "frequency_penalty": -2.5}, "frequency_penalty"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "n": 0}, "n"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "n": 1000}, "n"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "logit_bias": {"1": 200}}, "logit_bias"),
        ({"model": SMOLLM2_ALIAS, "messages": HELLO, "logit_bias": {"99999999": 5}}, "logit_bias"),
    ],
    ids=["missing-messages", "empty-messages", "messages-not-a-list", "unknown-role", "max-tokens-not-int",
         "max-tokens-zero", "temperature-out-of-range", "top-p-zero", "unsupported-parameter", "missing-model",
         "presence-penalty", "frequency-penalty", "top-logprobs", "five-stops", "n-zero", "n-huge",
         "bias-out-of-range", "bias-outside-vocabulary"],
)
def test_bad_request_is_400_naming_the_parameter(mesh, body, param):
    response = httpx.post(f"{mesh.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_malformed_json_is_400(mesh):
    response = httpx.post(f"{mesh.base_url}/v1/chat/completions", content=b'{"model": "x", "messages": [',
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_sdk_raises_bad_request_for_a_prompt_longer_than_the_context(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=SMOLLM2_ALIAS, messages=HELLO, max_tokens=100_000)
    assert caught.value.body["param"] == "max_tokens"
    assert "context length" in caught.value.body["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": SMOLLM2_ALIAS}, "prompt"),
        ({"model": SMOLLM2_ALIAS, "prompt": []}, "prompt"),
        ({"model": SMOLLM2_ALIAS, "prompt": [[]]}, "prompt"),
        ({"model": SMOLLM2_ALIAS, "prompt": [1, -5]}, "prompt"),
        ({"model": SMOLLM2_ALIAS, "prompt": [10**7]}, "prompt"),
        ({"model": SMOLLM2_ALIAS, "prompt": {"text": "Hi"}}, "prompt"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "use_raw_prompt": True, "logprobs": 0, "echo": True,
          "stop": "x", "prompt_logprobs": 1}, "prompt_logprobs"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "max_tokens": 0}, "max_tokens"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "max_tokens": 100_000}, "max_tokens"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "temperature": -1}, "temperature"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "top_p": 1.5}, "top_p"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "top_k": 0}, "top_k"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "n": 0}, "n"),
        ({"model": SMOLLM2_ALIAS, "prompt": ["Hi"] * 9, "n": 8}, "n"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "seed": "7"}, "seed"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "suffix": 5}, "suffix"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "suffix": "end"}, "suffix"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "suffix": "end", "echo": True}, "suffix"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "echo": "yes"}, "echo"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "logprobs": 6}, "logprobs"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "logprobs": True}, "logprobs"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "use_raw_prompt": "yes"}, "use_raw_prompt"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "error_behavior": "drop"}, "error_behavior"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "best_of": 2}, "best_of"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": SMOLLM2_ALIAS, "prompt": "Hi", "logit_bias": {"1": 200}}, "logit_bias"),
        ({"prompt": "Hi"}, "model"),
    ],
)
def test_bad_completions_request_is_400_naming_the_parameter(mesh, body, param):
    response = httpx.post(f"{mesh.base_url}/v1/completions", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/tokenize", {"model": SMOLLM2_ALIAS}, "prompt"),
        ("/tokenize", {"model": SMOLLM2_ALIAS, "prompt": "Hi", "messages": HELLO}, "messages"),
        ("/tokenize", {"model": SMOLLM2_ALIAS, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ("/tokenize", {"model": SMOLLM2_ALIAS, "prompt": "Hi", "return_token_strs": True}, "return_token_strs"),
        ("/detokenize", {"model": SMOLLM2_ALIAS, "tokens": ["a"]}, "tokens"),
        ("/detokenize", {"model": SMOLLM2_ALIAS}, "tokens"),
        ("/v1/chat/completions/tokenizer/encode/count", {"model": SMOLLM2_ALIAS}, "messages"),
        ("/v1/chat/completions/tokenizer/encode/count", {"model": SMOLLM2_ALIAS, "messages": HELLO, "temperature": 9},
         "temperature"),
    ],
)
def test_bad_tokenizer_request_is_400_naming_the_parameter(mesh, path, body, param):
    response = httpx.post(f"{mesh.base_url}{path}", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
