"""Embeddings end to end: `ingot serve` as processes, all-MiniLM-L6-v2, the real `openai` and
`azure-ai-inference` SDKs."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
from azure.ai.inference import EmbeddingsClient, ImageEmbeddingsClient
from azure.ai.inference.models import ImageEmbeddingInput
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from tests.conftest import MINILM_ALIAS, MINILM_ID, SMOLLM2_ALIAS

pytestmark = pytest.mark.e2e

SENTENCES = ["The cat sits outside.", "A man is playing guitar, loudly, on a small stage in the rain.", "Hi",
             "Retrieval systems rank passages by the similarity of their embeddings to the query's."]


@pytest.fixture(autouse=True)
def _model_is_built(minilm_dir):
    """Fails with `run make setup` rather than with a 404 when the embedding model was never built."""


@pytest.fixture(scope="module")
def azure(mesh) -> EmbeddingsClient:
    client = EmbeddingsClient(endpoint=f"{mesh.base_url}/models", credential=AzureKeyCredential("unused"),
                              model=MINILM_ALIAS, retry_total=0)
    yield client
    client.close()


def as_matrix(response) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_one_string_gives_one_unit_vector(client):
    response = client.embeddings.create(model=MINILM_ALIAS, input="The cat sits outside.", encoding_format="float")
    assert response.model == MINILM_ID and response.object == "list"
    assert len(response.data) == 1 and response.data[0].index == 0
    vector = np.array(response.data[0].embedding)
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    # [CLS] the cat sits outside . [SEP]
    assert response.usage.prompt_tokens == response.usage.total_tokens == 7


def test_a_batch_keeps_its_order_and_indices(client):
    response = client.embeddings.create(model=MINILM_ALIAS, input=SENTENCES, encoding_format="float")
    assert [item.index for item in response.data] == [0, 1, 2, 3]
    batched = as_matrix(response)
    for index, sentence in enumerate(SENTENCES):
        alone = client.embeddings.create(model=MINILM_ALIAS, input=sentence, encoding_format="float")
        # Alone or padded among longer and shorter sentences, a sentence gets the same vector.
        assert np.abs(as_matrix(alone)[0] - batched[index]).max() < 1e-5


def test_base64_round_trips_to_the_float_vectors(client, mesh):
    floats = as_matrix(client.embeddings.create(model=MINILM_ALIAS, input=SENTENCES, encoding_format="float"))
    # The SDK asks for base64 by default and decodes it itself.
    decoded = as_matrix(client.embeddings.create(model=MINILM_ALIAS, input=SENTENCES))
    assert np.array_equal(decoded, floats)
    raw = httpx.post(f"{mesh.base_url}/v1/embeddings", timeout=60,
                     json={"model": MINILM_ALIAS, "input": SENTENCES, "encoding_format": "base64"}).json()
    on_the_wire = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in raw["data"]])
    assert np.array_equal(on_the_wire, floats)


def test_vectors_match_the_reference_implementation(client, minilm_reference):
    response = client.embeddings.create(model=MINILM_ID, input=minilm_reference["sentences"])
    got = as_matrix(response)
    reference = np.array(minilm_reference["vectors"], dtype=np.float32)
    assert ((got * reference).sum(axis=1)).min() >= 0.999


def test_similar_sentences_are_closer_than_unrelated_ones(client):
    a, b, c = as_matrix(client.embeddings.create(model=MINILM_ALIAS, input=[
        "A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]))
    assert a @ b > 0.6 > a @ c


def test_a_chat_model_cannot_embed_and_an_embedding_model_cannot_chat(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=SMOLLM2_ALIAS, input="hello")
    assert "SmolLM2-135M-Instruct-generic-cpu:1" in caught.value.message and caught.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MINILM_ALIAS, messages=[{"role": "user", "content": "hi"}])
    assert MINILM_ALIAS in caught.value.message


def test_dimensions_the_model_lacks_are_a_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MINILM_ALIAS, input="hello", dimensions=256)
    assert caught.value.body["param"] == "dimensions"


def test_azure_openai_client_reaches_the_deployment_route(mesh, client):
    azure_openai = openai.AzureOpenAI(azure_endpoint=mesh.base_url, api_key="unused", api_version="2024-10-21",
                                      max_retries=0)
    response = azure_openai.embeddings.create(model=MINILM_ALIAS, input=["one", "two"])
    expected = as_matrix(client.embeddings.create(model=MINILM_ALIAS, input=["one", "two"]))
    assert np.array_equal(as_matrix(response), expected)


def test_azure_sdk_single_and_batch(azure, client):
    response = azure.embed(input=SENTENCES)
    assert response.model == MINILM_ID and response.id
    assert [item.index for item in response.data] == [0, 1, 2, 3]
    assert response.usage.prompt_tokens == response.usage.total_tokens > 0
    expected = as_matrix(client.embeddings.create(model=MINILM_ALIAS, input=SENTENCES))
    assert np.abs(as_matrix(response) - expected).max() < 1e-5


@pytest.mark.parametrize("encoding", ["float", "base64", "int8", "uint8", "binary", "ubinary"])
def test_azure_sdk_each_encoding(azure, encoding):
    floats = as_matrix(azure.embed(input=SENTENCES[:2], encoding_format="float"))
    response = azure.embed(input=SENTENCES[:2], encoding_format=encoding, input_type="document")
    values = [item.embedding for item in response.data]
    if encoding == "float":
        assert np.array_equal(np.array(values, dtype=np.float32), floats)
    elif encoding == "base64":
        decoded = np.stack([np.frombuffer(base64.b64decode(v), dtype="<f4") for v in values])
        assert np.array_equal(decoded, floats)
    elif encoding in ("int8", "uint8"):
        quantised = np.array(values) - (128 if encoding == "uint8" else 0)
        assert quantised.min() >= -127 and quantised.max() <= 127
        cosine = (quantised * floats).sum(axis=1) / np.linalg.norm(quantised, axis=1)
        assert cosine.min() > 0.99
    else:
        packed = (np.array(values) + (128 if encoding == "binary" else 0)).astype(np.uint8)
        assert packed.shape == (2, 48)
        assert np.array_equal(np.unpackbits(packed, axis=1).astype(bool), floats > 0)


def test_azure_sdk_model_info_names_an_embeddings_model(azure):
    info = azure.get_model_info(headers={"azureml-model-deployment": MINILM_ALIAS})
    assert (info.model_name, info.model_type, info.model_provider_name) == (
        MINILM_ID, "embeddings", "sentence-transformers")


def test_azure_sdk_sees_a_422_for_what_the_model_cannot_do(azure):
    with pytest.raises(HttpResponseError) as caught:
        azure.embed(input=["hello"], dimensions=128)
    assert caught.value.status_code == 422
    body = caught.value.response.json()
    assert body["detail"]["loc"] == ["body", "dimensions"] and body["code"] == "parameter_not_supported"


def test_azure_sdk_model_extras_pass_through_to_the_model(azure):
    with pytest.raises(HttpResponseError) as caught:
        azure.embed(input=["word " * 400], model_extras={"truncate": False})
    assert caught.value.status_code == 400 and "256" in caught.value.message
    assert len(azure.embed(input=["word " * 400], model_extras={"truncate": True}).data) == 1


def test_azure_image_embeddings_answer_422_without_a_vector(mesh):
    client = ImageEmbeddingsClient(endpoint=f"{mesh.base_url}/models", credential=AzureKeyCredential("unused"),
                                   retry_total=0)
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    with pytest.raises(HttpResponseError) as caught:
        client.embed(input=[ImageEmbeddingInput(image=png, text="a cat")], model=MINILM_ALIAS)
    assert caught.value.status_code == 422
    assert "No image embedding model is deployed" in caught.value.response.json()["message"]
    client.close()


def test_ready_reports_the_embeddings_service(mesh):
    body = httpx.get(f"{mesh.base_url}/ready").json()
    assert body["services"]["embeddings"] == {"address": mesh.addresses["embeddings"], "status": "SERVING"}
