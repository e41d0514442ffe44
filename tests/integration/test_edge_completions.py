"""POST /v1/completions against fake services over real gRPC."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from ingot.common.errors import InvalidArgument
from ingot.common.v1 import common_pb2
from tests.integration.edge_fakes import (BOS, CHAT_ALIAS, CHAT_CONTEXT, CHAT_ID, EMBED_ALIAS, FIM, Mesh, Script,
                                          sse_data, sse_json)

URL = "/v1/completions"


def body(**extra: object) -> dict[str, object]:
    return {"model": CHAT_ALIAS, "prompt": "Say hello", **extra}


async def test_answer_has_openai_text_completion_shape(client: TestClient, mesh: Mesh) -> None:
    resp = await client.post(URL, json=body(max_tokens=12, temperature=0.5, top_p=0.9, top_k=3, seed=7, stop="."))
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["id"].startswith("cmpl-")
    assert answer["object"] == "text_completion"
    assert answer["model"] == CHAT_ID
    assert answer["choices"] == [{"index": 0, "text": "Hello, world", "logprobs": None, "finish_reason": "stop"}]
    prompt_tokens = len(mesh.inference.requests[0].prompt_token_ids)
    assert answer["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 3,
                               "total_tokens": prompt_tokens + 3}
    sampling = mesh.inference.requests[0].sampling
    assert (sampling.max_tokens, sampling.top_k, sampling.seed, list(sampling.stop)) == (12, 3, 7, ["."])
    assert abs(sampling.temperature - 0.5) < 1e-6 and abs(sampling.top_p - 0.9) < 1e-6


async def test_a_string_prompt_is_encoded_as_written(client: TestClient, mesh: Mesh) -> None:
    assert (await client.post(URL, json=body())).status == 200
    assert not mesh.tokenizer.requests
    [encoded] = mesh.tokenizer.encoded
    assert (encoded.text, encoded.add_special_tokens) == ("Say hello", True)
    words = mesh.tokenizer.words
    assert list(mesh.inference.requests[0].prompt_token_ids) == [BOS, words["Say"], words["hello"]]


async def test_use_raw_prompt_false_puts_the_prompt_through_the_chat_template(client: TestClient,
                                                                                mesh: Mesh) -> None:
    assert (await client.post(URL, json=body(use_raw_prompt=False))).status == 200
    [templated] = mesh.tokenizer.requests
    assert [(m.role, m.content) for m in templated.messages] == [("user", "Say hello")]
    assert not mesh.tokenizer.encoded


async def test_token_id_prompts_go_to_the_model_untouched(client: TestClient, mesh: Mesh) -> None:
    assert (await client.post(URL, json=body(prompt=[5, 6, 7]))).status == 200
    assert list(mesh.inference.requests[0].prompt_token_ids) == [5, 6, 7]
    assert not mesh.tokenizer.requests and not mesh.tokenizer.encoded


async def test_a_batch_numbers_choices_prompt_by_prompt(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(pieces=["x"], tell_prompt=True)
    resp = await client.post(URL, json=body(prompt=[[11, 12], [21], [31, 32, 33]], n=2))
    answer = await resp.json()
    assert [(c["index"], c["text"]) for c in answer["choices"]] == [
        (0, "[11 12]#0"), (1, "[11 12]#1"), (2, "[21]#0"), (3, "[21]#1"), (4, "[31 32 33]#0"), (5, "[31 32 33]#1")]
    # One call per prompt, run at once, so they may arrive in any order.
    assert sorted(list(r.prompt_token_ids) for r in mesh.inference.requests) == [[11, 12], [21], [31, 32, 33]]
    assert all(r.n == 2 for r in mesh.inference.requests)
    # Each prompt counted once, each choice's completion counted.
    assert answer["usage"] == {"prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12}


async def test_a_streamed_batch_keeps_the_same_numbering(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(pieces=["x"], tell_prompt=True)
    resp = await client.post(URL, json=body(prompt=[[11], [21]], n=2, stream=True,
                                            stream_options={"include_usage": True}))
    assert resp.headers["Content-Type"] == "text/event-stream"
    raw = await resp.text()
    assert sse_data(raw)[-1] == "[DONE]"
    chunks = sse_json(raw)
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks[:-1]:
        [choice] = chunk["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
        assert "usage" in chunk and chunk["usage"] is None
    assert texts == {0: "[11]#0", 1: "[11]#1", 2: "[21]#0", 3: "[21]#1"}
    assert finishes == {0: "stop", 1: "stop", 2: "stop", 3: "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 2


async def test_echo_puts_the_prompt_as_sent_first(client: TestClient, mesh: Mesh) -> None:
    answer = await (await client.post(URL, json=body(prompt="  Say\thello ", echo=True))).json()
    assert answer["choices"][0]["text"] == "  Say\thello " + "Hello, world"


async def test_echo_of_token_ids_decodes_them(client: TestClient, mesh: Mesh) -> None:
    mesh.tokenizer.words.update(one=10, two=11)
    answer = await (await client.post(URL, json=body(prompt=[10, 11], echo=True))).json()
    assert answer["choices"][0]["text"] == "onetwo" + "Hello, world"


async def test_echo_with_logprobs_scores_the_prompt_first(client: TestClient, mesh: Mesh) -> None:
    mesh.tokenizer.words.update(one=10, two=11, three=12)
    resp = await client.post(URL, json=body(prompt=[10, 11, 12], echo=True, logprobs=2, max_tokens=3))
    answer = await resp.json()
    generate = mesh.inference.requests[0]
    assert generate.prompt_logprobs and generate.sampling.logprobs and generate.sampling.top_logprobs == 2
    logprobs = answer["choices"][0]["logprobs"]
    assert logprobs["tokens"] == ["one", "two", "three", "Hello", ",", " world"]
    assert logprobs["token_logprobs"] == [None, -0.5, -0.5, -0.5, -0.5, -0.5]
    assert logprobs["top_logprobs"][0] is None
    assert logprobs["top_logprobs"][1] == {"two": -0.5, "alt1": -1.5}
    assert logprobs["text_offset"] == [0, 3, 6, 11, 16, 17]
    assert answer["choices"][0]["text"] == "onetwothreeHello, world"


async def test_streamed_echo_sends_the_prompt_in_the_first_chunk(client: TestClient, mesh: Mesh) -> None:
    mesh.tokenizer.words.update(one=10, two=11)
    resp = await client.post(URL, json=body(prompt=[10, 11], echo=True, logprobs=0, stream=True))
    chunks = sse_json(await resp.text())
    first = chunks[0]["choices"][0]
    assert first["text"] == "onetwo"
    assert first["logprobs"]["tokens"] == ["one", "two"]
    assert first["logprobs"]["token_logprobs"] == [None, -0.5]
    # logprobs=0 still reports the sampled token, as OpenAI does.
    second = chunks[1]["choices"][0]
    assert second["text"] == "Hello"
    assert second["logprobs"] == {"tokens": ["Hello"], "token_logprobs": [-0.5], "top_logprobs": [{"Hello": -0.5}],
                                  "text_offset": [6]}


async def test_suffix_builds_the_fill_in_the_middle_prompt(client: TestClient, mesh: Mesh) -> None:
    mesh.tokenizer.fim = True
    resp = await client.post(URL, json=body(prompt="def add ( a , b ) :", suffix="return total"))
    assert resp.status == 200, await resp.text()
    words = mesh.tokenizer.words
    before = [words[w] for w in "def add ( a , b ) :".split()]
    after = [words["return"], words["total"]]
    expected = [FIM["<fim_prefix>"], *before, FIM["<fim_suffix>"], *after, FIM["<fim_middle>"]]
    assert list(mesh.inference.requests[0].prompt_token_ids) == expected
    assert not mesh.tokenizer.requests  # no chat template around a middle
    assert (await resp.json())["choices"][0]["text"] == "Hello, world"


async def test_suffix_on_a_model_without_fim_tokens_is_400_on_suffix(client: TestClient, mesh: Mesh) -> None:
    # The markers still encode to one (ordinary) token each: only special tokens count.
    resp = await client.post(URL, json=body(suffix="end"))
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "suffix"
    assert not mesh.inference.requests


async def test_truncate_clips_max_tokens_to_the_context(client: TestClient, mesh: Mesh) -> None:
    prompt = list(range(10, 40))
    resp = await client.post(URL, json=body(prompt=prompt, max_tokens=1000, error_behavior="truncate"))
    assert resp.status == 200
    assert mesh.inference.requests[0].sampling.max_tokens == CHAT_CONTEXT - len(prompt)


async def test_overflow_is_400_on_max_tokens_before_any_generation(client: TestClient, mesh: Mesh) -> None:
    resp = await client.post(URL, json=body(prompt=[[10], list(range(10, 40))], max_tokens=80))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["param"], error["code"]) == ("max_tokens", "context_length_exceeded")
    assert "prompt 1" in error["message"]
    assert not mesh.inference.requests


async def test_a_prompt_that_alone_overflows_is_400_even_when_truncating(client: TestClient, mesh: Mesh) -> None:
    resp = await client.post(URL, json=body(prompt=list(range(10, 10 + CHAT_CONTEXT)), error_behavior="truncate"))
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "prompt"


async def test_inference_speaking_of_messages_is_about_the_prompt(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_first=InvalidArgument("The prompt is empty.", param="messages"))
    for stream in (False, True):
        resp = await client.post(URL, json=body(stream=stream))
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "prompt"


async def test_decoding_an_unknown_token_is_400_on_prompt(client: TestClient) -> None:
    resp = await client.post(URL, json=body(prompt=[99999], echo=True))
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "prompt"


async def test_embeddings_model_is_400_on_model(client: TestClient) -> None:
    resp = await client.post(URL, json=body(model=EMBED_ALIAS))
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "model"


async def test_a_stream_failing_midway_sends_one_error_and_no_done(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(fail_after=InvalidArgument("Gone wrong.", param="stop"))
    resp = await client.post(URL, json=body(n=2, stream=True))
    data = sse_data(await resp.text())
    assert "[DONE]" not in data
    assert sse_json(await resp.text())[-1]["error"]["message"] == "Gone wrong."


async def test_client_leaving_a_batch_cancels_every_generation(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(pieces=["Hello"], hang=True)
    resp = await client.post(URL, json=body(prompt=[[10], [11]], stream=True))
    await resp.content.readline()
    resp.close()
    for _ in range(200):
        if mesh.inference.cancellations == 2:
            break
        await asyncio.sleep(0.05)
    assert mesh.inference.cancellations == 2


async def test_finish_reason_length(client: TestClient, mesh: Mesh) -> None:
    mesh.inference.script = Script(finish=common_pb2.FINISH_REASON_LENGTH)
    answer = await (await client.post(URL, json=body(max_tokens=3))).json()
    assert answer["choices"][0]["finish_reason"] == "length"
