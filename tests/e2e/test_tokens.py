"""The tokenizer routes against the real mesh: Foundry Local's count agrees with what a chat request
reports, and vLLM's /tokenize and /detokenize agree with each other and with generation."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import SMOLLM2_ALIAS

pytestmark = pytest.mark.e2e

CONVERSATION = [{"role": "system", "content": "You answer in one word."},
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": [{"type": "text", "text": "And of Italy?"},
                                             {"type": "text", "text": "Café ☕"}]}]


def post(mesh, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{mesh.base_url}{path}", json={"model": SMOLLM2_ALIAS, **body}, timeout=60)


@pytest.mark.parametrize("messages", [CONVERSATION, [{"role": "user", "content": "Hi"}]], ids=["multi-turn", "one"])
def test_the_count_is_the_prompt_tokens_of_the_same_chat_request(client, mesh, messages):
    body = {"messages": messages, "max_tokens": 3, "temperature": 0}
    counted = post(mesh, "/v1/chat/completions/tokenizer/encode/count", body)
    assert counted.status_code == 200, counted.text
    chat = client.chat.completions.create(model=SMOLLM2_ALIAS, **body)
    assert counted.json() == {"tokenCount": chat.usage.prompt_tokens}


def test_tokenize_then_detokenize_gives_the_text_back(mesh):
    text = "Café ☕ costs 3€ — naïve déjà vu.\nSecond line."
    tokenized = post(mesh, "/tokenize", {"prompt": text}).json()
    assert tokenized["count"] == len(tokenized["tokens"]) > 5
    assert tokenized["max_model_len"] == 8192
    assert post(mesh, "/detokenize", {"tokens": tokenized["tokens"]}).json() == {"prompt": text}


def test_tokenized_messages_are_what_chat_sends_the_model(client, mesh):
    tokenized = post(mesh, "/tokenize", {"messages": CONVERSATION}).json()
    chat = client.chat.completions.create(model=SMOLLM2_ALIAS, messages=CONVERSATION, max_tokens=2)
    assert tokenized["count"] == chat.usage.prompt_tokens
    opening = post(mesh, "/detokenize", {"tokens": tokenized["tokens"]}).json()["prompt"]
    assert opening.endswith("<|im_start|>assistant\n")
    without = post(mesh, "/tokenize", {"messages": CONVERSATION, "add_generation_prompt": False}).json()
    assert post(mesh, "/detokenize", {"tokens": without["tokens"]}).json()["prompt"] == \
        opening.removesuffix("<|im_start|>assistant\n")


def test_continue_final_message_leaves_the_last_message_open(mesh):
    messages = [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "One, two,"}]
    tokens = post(mesh, "/tokenize", {"messages": messages, "add_generation_prompt": False,
                                      "continue_final_message": True}).json()["tokens"]
    assert post(mesh, "/detokenize", {"tokens": tokens}).json()["prompt"].endswith("assistant\nOne, two,")


def test_detokenizing_a_token_outside_the_vocabulary_is_400_naming_it(mesh):
    response = post(mesh, "/detokenize", {"tokens": [1, 10**6]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tokens[1]"


def test_the_count_of_an_unknown_model_is_404(mesh):
    response = post(mesh, "/v1/chat/completions/tokenizer/encode/count",
                    {"model": "no-such-model", "messages": CONVERSATION})
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"
