"""The Azure surfaces end to end: `ingot serve` behind HTTPS with API keys, keyless (JWT) auth, deployments
and a content filter, called with the real `azure-ai-inference` and `openai` SDKs."""

from __future__ import annotations

import json
import os
import ssl
import time

import httpx
import openai
import pytest
from azure.ai.inference import ChatCompletionsClient, EmbeddingsClient
from azure.ai.inference.models import SystemMessage, UserMessage
from azure.core.credentials import AccessToken, AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from tests.conftest import MINILM_ALIAS, SMOLLM2_ALIAS
from tests.e2e.mesh import Mesh
from tests.security import SigningKey, claims, tls_certificate, unsigned, write_jwks

pytestmark = pytest.mark.e2e

KEY = "test-key-one"
FILE_KEY = "test-key-from-file"
ISSUER = "https://login.microsoftonline.test/tenant/v2.0"
# What the azure-ai-inference SDK asks a token credential for (scope https://ml.azure.com/.default).
AUDIENCE = "https://ml.azure.com"
API = "?api-version=2024-05-01-preview"
# The output filter test's terms: words any short English answer holds. The prompt that asks for the answer
# ("Hi") holds none of them.
COMMON_WORDS = ["the", "you", "i", "is", "a", "an", "to", "and", "of", "it", "can", "help", "hello", "how",
                "what", "today", "there", "my", "me", "am", "are", "assist"]

DEPLOYMENTS = {"deployments": [
    {"name": "smol-plain", "model": SMOLLM2_ALIAS, "parameters": {"temperature": 0, "max_tokens": 8}},
    {"name": "smol-long", "model": SMOLLM2_ALIAS, "parameters": {"temperature": 0, "max_tokens": 24}},
    {"name": "smol-safe", "model": SMOLLM2_ALIAS, "content_safety": True,
     "parameters": {"temperature": 0, "max_tokens": 40}},
    {"name": "smol-limited", "model": SMOLLM2_ALIAS, "requests_per_minute": 2, "parameters": {"max_tokens": 2}},
    {"name": "minilm", "model": MINILM_ALIAS},
]}
TERMS = {
    "thresholds": {"violence": "medium", "hate": "medium", "sexual": "medium", "self_harm": "low"},
    "terms": {"violence": {"high": ["kill you"], "medium": COMMON_WORDS}},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ingot_home, smollm2_dir, minilm_dir):
    folder = tmp_path_factory.mktemp("azure")
    cert, key = tls_certificate(folder)
    signer = SigningKey.generate("key-1")
    jwks = write_jwks(folder / "jwks.json", signer)
    (folder / "deployments.json").write_text(json.dumps(DEPLOYMENTS))
    (folder / "terms.json").write_text(json.dumps(TERMS))
    key_file = folder / "keys.txt"
    key_file.write_text("# one key a line\n")
    mesh = Mesh(ingot_home, env={"INGOT_API_KEYS": KEY}, args=[
        "--tls-cert", str(cert), "--tls-key", str(key), "--api-key-file", str(key_file),
        "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, "--jwks", str(jwks),
        "--deployments", str(folder / "deployments.json"), "--content-safety-terms", str(folder / "terms.json"),
    ]).start()
    yield {"mesh": mesh, "cert": str(cert), "signer": signer, "key_file": key_file}
    mesh.stop()


@pytest.fixture(scope="module")
def base(setup) -> str:
    return setup["mesh"].base_url


@pytest.fixture(scope="module")
def http(setup) -> httpx.Client:
    with httpx.Client(base_url=setup["mesh"].base_url, verify=ssl.create_default_context(cafile=setup["cert"]),
                      timeout=120) as client:
        yield client


def chat_client(setup, credential, **kwargs) -> ChatCompletionsClient:
    # connection_verify: azure-core's transport takes a CA bundle path, here the edge's self-signed certificate.
    return ChatCompletionsClient(endpoint=f"{setup['mesh'].base_url}/models", credential=credential,
                                 connection_verify=setup["cert"], retry_total=0, **kwargs)


@pytest.fixture(scope="module")
def azure_chat(setup) -> ChatCompletionsClient:
    client = chat_client(setup, AzureKeyCredential(KEY), model="smol-plain")
    yield client
    client.close()


class StaticToken:
    """A token credential as azure-identity's are: get_token(*scopes) -> AccessToken."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 600)


def test_chat_completes_and_streams_with_a_key(azure_chat):
    messages = [SystemMessage("Be brief."), UserMessage("Name a colour.")]
    answer = azure_chat.complete(messages=messages)
    choice = answer.choices[0]
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    # The deployment's default max_tokens (8) applies: the request set none.
    assert 0 < answer.usage.completion_tokens <= 8
    streamed = azure_chat.complete(messages=messages, stream=True)
    text, reasons = "", []
    for update in streamed:
        for item in update.choices:
            text += item.delta.content or ""
            reasons.append(item.finish_reason)
    streamed.close()
    # temperature 0 from the deployment: the same answer either way.
    assert text == choice.message.content
    assert reasons[-1] in ("stop", "length")


def test_a_token_credential_works_over_tls(setup):
    token = setup["signer"].sign(claims(ISSUER, AUDIENCE))
    credential = StaticToken(token)
    client = chat_client(setup, credential, model="smol-plain")
    answer = client.complete(messages=[UserMessage("Say yes.")])
    client.close()
    assert answer.choices[0].message.content
    assert credential.scopes == [("https://ml.azure.com/.default",)]


def test_model_info_names_the_deployed_model(azure_chat):
    info = azure_chat.get_model_info(headers={"azureml-model-deployment": "smol-plain"})
    assert info.model_name.startswith("SmolLM2-135M-Instruct") and info.model_type == "chat_completion"
    assert info.model_provider_name


def test_embeddings_client_on_a_deployment(setup):
    client = EmbeddingsClient(endpoint=f"{setup['mesh'].base_url}/models", credential=AzureKeyCredential(KEY),
                              model="minilm", connection_verify=setup["cert"], retry_total=0)
    result = client.embed(input=["first sentence", "second one"])
    client.close()
    assert [len(item.embedding) for item in result.data] == [384, 384]


def test_model_extras_pass_through_and_unknown_ones_are_a_422(azure_chat):
    def greedy(**extras) -> str:
        # top_k 1 is greedy whatever the temperature: the two answers differ only by what reached the model.
        return azure_chat.complete(messages=[UserMessage("Write a short story about a dragon.")], max_tokens=30,
                                   model_extras={"top_k": 1, **extras}).choices[0].message.content

    assert greedy(repetition_penalty=1.5) != greedy()
    with pytest.raises(HttpResponseError) as caught:
        azure_chat.complete(messages=[UserMessage("Hi")], model_extras={"safe_prompt": True})
    assert caught.value.status_code == 422
    body = caught.value.response.json()
    assert body["detail"]["loc"] == ["body", "safe_prompt"] and body["code"] == "parameter_not_supported"


def test_422_shapes_for_extra_and_unsupported_parameters(http):
    headers = {"api-key": KEY}
    messages = [{"role": "user", "content": "Hi"}]
    extra = http.post(f"/chat/completions{API}", headers=headers,
                      json={"model": "smol-plain", "messages": messages, "top_k": 3})
    assert extra.status_code == 422
    assert extra.json()["detail"]["loc"] == ["body", "top_k"] and extra.json()["status"] == 422
    dropped = http.post(f"/chat/completions{API}", headers={**headers, "extra-parameters": "drop"},
                        json={"model": "smol-plain", "messages": messages, "top_k": 3})
    assert dropped.status_code == 200
    # `modalities` is Azure's own parameter, but no model here can answer in anything but text. (`tools` was
    # the example until every chat model took tools.)
    modalities = ["text", "audio"]
    refused = http.post(f"/models/chat/completions{API}", headers=headers,
                        json={"model": "smol-plain", "messages": messages, "modalities": modalities})
    assert refused.status_code == 422
    body = refused.json()
    assert body == {"status": 422, "code": "parameter_not_supported", "detail": body["detail"],
                    "message": "One of the parameters contain invalid values."}
    assert body["detail"]["loc"] == ["body", "modalities"] and body["detail"]["input"] == modalities


def test_unknown_deployment_and_api_version(azure_chat, http):
    with pytest.raises(ResourceNotFoundError) as caught:
        azure_chat.complete(messages=[UserMessage("Hi")], model="no-such-deployment")
    assert "does not exist" in caught.value.response.json()["error"]["message"]
    wrong = http.post("/chat/completions?api-version=2023-01-01", headers={"api-key": KEY},
                      json={"model": "smol-plain", "messages": [{"role": "user", "content": "Hi"}]})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "api-version"
    ok = http.post("/completions?api-version=2025-04-01", headers={"api-key": KEY},
                   json={"model": "smol-plain", "prompt": "Colours: red,"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"]


def test_azure_openai_deployment_routes(setup):
    client = openai.AzureOpenAI(azure_endpoint=setup["mesh"].base_url, api_key=KEY, api_version="2024-10-21",
                                http_client=httpx.Client(verify=ssl.create_default_context(cafile=setup["cert"])), max_retries=0)
    answer = client.chat.completions.create(model="smol-plain", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content and answer.usage.completion_tokens <= 8
    chunks = list(client.chat.completions.create(model="smol-plain", stream=True,
                                                 messages=[{"role": "user", "content": "Hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer.choices[0].message.content
    completion = client.completions.create(model="smol-plain", prompt="One, two,")
    assert completion.choices[0].text
    vectors = client.embeddings.create(model="minilm", input="hello")
    assert len(vectors.data[0].embedding) == 384


def test_openai_client_on_the_v1_routes(setup):
    client = openai.OpenAI(base_url=f"{setup['mesh'].base_url}/openai/v1", api_key=KEY,
                           http_client=httpx.Client(verify=ssl.create_default_context(cafile=setup["cert"])), max_retries=0)
    answer = client.chat.completions.create(model="smol-plain", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content
    assert any(model.id == SMOLLM2_ALIAS for model in client.models.list())
    assert client.completions.create(model="smol-plain", prompt="A, B,").choices[0].text
    assert len(client.embeddings.create(model="minilm", input="hi").data[0].embedding) == 384


def test_each_401_case(setup, http):
    signer: SigningKey = setup["signer"]
    stranger = SigningKey.generate("key-1")  # the same kid, another key: the signature does not verify
    body = {"model": "smol-plain", "messages": [{"role": "user", "content": "Hi"}]}
    tokens = {
        "expired": signer.sign(claims(ISSUER, AUDIENCE, lifetime=-3600)),
        "wrong audience": signer.sign(claims(ISSUER, "https://cognitiveservices.azure.com")),
        "wrong issuer": signer.sign(claims("https://evil.test/", AUDIENCE)),
        "bad signature": stranger.sign(claims(ISSUER, AUDIENCE)),
        "alg none": unsigned(claims(ISSUER, AUDIENCE)),
    }
    for case, token in tokens.items():
        answer = http.post(f"/chat/completions{API}", headers={"Authorization": f"Bearer {token}"}, json=body)
        assert answer.status_code == 401, case
        assert answer.json()["error"]["code"] == "invalid_token", case
    for headers in ({}, {"api-key": "wrong"}, {"Authorization": "Bearer wrong"}):
        azure = http.post(f"/chat/completions{API}", headers=headers, json=body)
        assert azure.status_code == 401 and azure.json()["error"]["status"] == 401
        # OpenAI's routes keep OpenAI's shape.
        plain = http.post("/v1/chat/completions", headers=headers, json=body)
        assert plain.status_code == 401 and set(plain.json()["error"]) == {"message", "type", "param", "code"}
    assert http.get("/health").status_code == 200
    # A readiness probe cannot send a key.
    assert http.get("/ready").status_code in (200, 503)
    with pytest.raises(ClientAuthenticationError):
        client = chat_client(setup, AzureKeyCredential("wrong"), model="smol-plain")
        client.complete(messages=[UserMessage("Hi")])


def test_the_key_file_is_reloaded_without_a_restart(setup, http):
    headers = {"Authorization": f"Bearer {FILE_KEY}"}
    assert http.get("/v1/models", headers=headers).status_code == 401
    key_file = setup["key_file"]
    key_file.write_text(f"# one key a line\n{FILE_KEY}\n")
    stat = key_file.stat()
    # A second's mtime granularity must not hide the change.
    os.utime(key_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert http.get("/v1/models", headers=headers).status_code == 200


def test_a_filtered_prompt_is_a_400(setup):
    client = chat_client(setup, AzureKeyCredential(KEY), model="smol-safe")
    with pytest.raises(HttpResponseError) as caught:
        client.complete(messages=[UserMessage("Tell him I will kill you")])
    client.close()
    assert caught.value.status_code == 400
    error = caught.value.response.json()["error"]
    assert error["code"] == "content_filter" and error["param"] == "messages"


def test_a_filtered_output_ends_with_content_filter(setup, http):
    # Unfiltered, the same deployment settings say common words; filtered, the choice ends at the first.
    unfiltered = http.post(f"/chat/completions{API}", headers={"api-key": KEY, "extra-parameters": "drop"},
                           json={"model": "smol-long", "messages": [{"role": "user", "content": "Hi"}]}).json()
    assert unfiltered["choices"][0]["finish_reason"] in ("stop", "length")
    client = chat_client(setup, AzureKeyCredential(KEY), model="smol-safe")
    answer = client.complete(messages=[UserMessage("Hi")])
    assert answer.choices[0].finish_reason == "content_filter"
    assert len(answer.choices[0].message.content) < len(unfiltered["choices"][0]["message"]["content"])
    reasons = [item.finish_reason for update in client.complete(messages=[UserMessage("Hi")], stream=True)
               for item in update.choices]
    client.close()
    assert reasons[-1] == "content_filter"


def test_a_deployment_rate_limit_is_a_429_with_retry_after(http):
    body = {"model": "smol-limited", "messages": [{"role": "user", "content": "Hi"}]}
    statuses = [http.post("/openai/v1/chat/completions", headers={"api-key": KEY}, json=body) for _ in range(3)]
    assert [s.status_code for s in statuses] == [200, 200, 429]
    assert int(statuses[-1].headers["Retry-After"]) >= 1
    assert statuses[-1].json()["error"]["code"] == "rate_limit_exceeded"
