"""The embeddings service in-process on port 0 with the real all-MiniLM-L6-v2 build, behind the real
registry over the built cache.

The reference vectors come from sentence-transformers on the original weights (not from this code):
tests/data/make_minilm_reference.py wrote tests/data/all_minilm_l6_v2_reference.json, one sentence at a
time, and these tests only read that file.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from tokenizers import Tokenizer

from ingot.common.errors import FailedPrecondition, InvalidArgument, NotFound, error_from_rpc
from ingot.common.grpcserver import ServiceHost
from ingot.embeddings.v1 import embeddings_service_pb2 as pb
from ingot.embeddings.v1 import embeddings_service_pb2_grpc as pb_grpc
from services.embeddings import server as embeddings_server
from services.embeddings.settings import EmbeddingsSettings
from tests.conftest import MINILM_ALIAS, MINILM_ID, SMOLLM2_ALIAS
from tests.integration.helpers import serve_registry


@pytest.fixture()
async def service(ingot_home, minilm_dir, smollm2_dir):
    registry, registry_address = await serve_registry(ingot_home / "models")
    host = ServiceHost("embeddings", [embeddings_server.SERVICE_NAME])
    config = EmbeddingsSettings(listen="127.0.0.1:0", registry_address=registry_address, max_batch_size=16,
                                max_batch_tokens=1024)
    _, cleanup = embeddings_server.build(host.server, config)
    address = await host.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(address)
    yield pb_grpc.EmbeddingsServiceStub(channel)
    await channel.close()
    await host.stop(0)
    await cleanup()
    await registry.stop(0)


def texts(*items: str) -> list[pb.EmbedInput]:
    return [pb.EmbedInput(text=t) for t in items]


def matrix(response: pb.EmbedResponse) -> np.ndarray:
    return np.array([list(e.values) for e in response.embeddings], dtype=np.float32)


async def embed(stub, inputs, **fields) -> pb.EmbedResponse:
    return await stub.Embed(pb.EmbedRequest(model=fields.pop("model", MINILM_ALIAS), inputs=inputs, **fields),
                            timeout=60)


async def failure(call) -> Exception:
    try:
        await call
    except grpc.RpcError as err:
        return error_from_rpc(err)
    pytest.fail("the call succeeded")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


async def test_vectors_match_sentence_transformers_on_the_original_weights(service, minilm_reference):
    response = await embed(service, texts(*minilm_reference["sentences"]))
    got = matrix(response)
    reference = np.array(minilm_reference["vectors"], dtype=np.float32)
    assert got.shape == reference.shape == (len(minilm_reference["sentences"]), 384)
    assert cosines(got, reference).min() >= 0.999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert response.model == MINILM_ID


async def test_instruction_is_prepended_as_sentence_transformers_prompts_are(service, minilm_reference):
    response = await embed(service, texts(*minilm_reference["instructed_sentences"]),
                           instruction=minilm_reference["instruction"])
    reference = np.array(minilm_reference["instructed_vectors"], dtype=np.float32)
    assert cosines(matrix(response), reference).min() >= 0.999
    plain = await embed(service, texts(*minilm_reference["instructed_sentences"]))
    assert cosines(matrix(plain), reference).max() < 0.99


async def test_a_vector_is_the_same_alone_and_in_a_batch_of_different_lengths(service, minilm_reference):
    sentences = minilm_reference["sentences"]
    batched = matrix(await embed(service, texts(*sentences)))
    alone = np.stack([matrix(await embed(service, texts(s)))[0] for s in sentences])
    assert np.abs(batched - alone).max() < 1e-5


async def test_concurrent_calls_share_runs_and_each_gets_its_own_vectors(service, minilm_reference):
    sentences = minilm_reference["sentences"][:8]
    expected = matrix(await embed(service, texts(*sentences)))
    before = (await service.ListLoadedModels(pb.ListLoadedModelsRequest())).models[0]
    answers = await asyncio.gather(*(embed(service, texts(s)) for s in sentences * 4))
    after = (await service.ListLoadedModels(pb.ListLoadedModelsRequest())).models[0]
    for index, answer in enumerate(answers):
        assert np.abs(matrix(answer)[0] - expected[index % 8]).max() < 1e-5
    assert after.embedded_inputs - before.embedded_inputs == 32
    # 32 single-input calls arriving together must not take 32 runs.
    assert after.batches - before.batches < 32


async def test_token_ids_embed_like_the_text_they_encode(service, minilm_dir):
    tokenizer = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    ids = tokenizer.encode("A man is playing guitar.", add_special_tokens=False).ids
    from_ids = await embed(service, [pb.EmbedInput(tokens=pb.TokenIds(ids=ids))])
    from_text = await embed(service, texts("A man is playing guitar."))
    assert np.abs(matrix(from_ids) - matrix(from_text)).max() < 1e-5
    assert from_ids.usage.prompt_tokens == len(ids) + 2


async def test_long_inputs_are_truncated_to_the_window_unless_the_caller_forbids_it(service):
    long_text = " ".join(f"word{i}" for i in range(400))
    response = await embed(service, texts(long_text, "short"))
    assert [e.truncated for e in response.embeddings] == [True, False]
    assert response.embeddings[0].token_count == 256
    assert response.usage.prompt_tokens == response.usage.total_tokens == 256 + response.embeddings[1].token_count
    error = await failure(embed(service, texts("short", long_text), fail_on_overflow=True))
    assert isinstance(error, InvalidArgument)
    assert error.code == "context_length_exceeded" and "Input 1" in error.message and "256" in error.message


async def test_a_chat_model_is_refused_by_name(service):
    error = await failure(embed(service, texts("hi"), model=SMOLLM2_ALIAS))
    assert isinstance(error, InvalidArgument) and error.param == "model"
    assert "SmolLM2-135M-Instruct-generic-cpu:1" in error.message and "not an embeddings model" in error.message


async def test_unknown_model_is_not_found(service):
    error = await failure(embed(service, texts("hi"), model="no-such-model"))
    assert isinstance(error, NotFound) and error.param == "model"


async def test_dimensions_other_than_the_models_own_are_not_supported(service):
    same = await embed(service, texts("hi"), dimensions=384)
    assert len(same.embeddings[0].values) == 384
    error = await failure(embed(service, texts("hi"), dimensions=128))
    assert isinstance(error, InvalidArgument)
    assert (error.param, error.code) == ("dimensions", "parameter_not_supported")
    assert "384" in error.message


async def test_input_types_of_a_symmetric_model_embed_alike(service):
    vectors = [matrix(await embed(service, texts("How do I cook pasta?"), input_type=kind))
               for kind in (pb.INPUT_TYPE_TEXT, pb.INPUT_TYPE_QUERY, pb.INPUT_TYPE_DOCUMENT)]
    assert np.abs(vectors[0] - vectors[1]).max() < 1e-6 and np.abs(vectors[0] - vectors[2]).max() < 1e-6


async def test_out_of_vocabulary_token_ids_are_refused(service):
    error = await failure(embed(service, [pb.EmbedInput(tokens=pb.TokenIds(ids=[101, 40000]))]))
    assert isinstance(error, InvalidArgument) and "40000" in error.message


async def test_image_embeddings_fail_with_a_clear_precondition(service):
    image = pb.ImageInput(image=b"\x89PNG", media_type="image/png")
    request = pb.EmbedImagesRequest(model=MINILM_ALIAS, inputs=[image])
    error = await failure(service.EmbedImages(request))
    assert isinstance(error, FailedPrecondition) and "No image embedding model is deployed" in error.message


async def test_load_reports_the_model_and_unload_forgets_it(service):
    loaded = (await service.LoadModel(pb.LoadModelRequest(model=MINILM_ALIAS))).model
    assert (loaded.id, loaded.dimensions, loaded.max_sequence_length) == (MINILM_ID, 384, 256)
    await service.UnloadModel(pb.UnloadModelRequest(model=MINILM_ID))
    assert not (await service.ListLoadedModels(pb.ListLoadedModelsRequest())).models
    # And it comes back on the next call.
    assert len((await embed(service, texts("again"))).embeddings) == 1
