"""The public gRPC API behind the same door as HTTPS: the edge's certificate (TLS on the gRPC port too), API
keys and keyless JWTs in call metadata, deployments with their defaults, the content filter, a deployment's
rate limit, the per-key concurrency limit, and the metrics the edge keeps."""

from __future__ import annotations

import json

import ssl

import grpc
import httpx
import pytest

from ingot.api.v1 import ingot_service_pb2 as pb
from ingot.api.v1 import ingot_service_pb2_grpc as pb_grpc
from tests.conftest import SMOLLM2_ALIAS
from tests.e2e.grpcapi import error_info, start_grpc_mesh
from tests.security import SigningKey, claims, tls_certificate, write_jwks

pytestmark = pytest.mark.e2e

KEY = "grpc-secure-key"
ISSUER = "https://login.microsoftonline.test/tenant/v2.0"
AUDIENCE = "https://ml.azure.com"
DEPLOYMENTS = {"deployments": [
    {"name": "smol-short", "model": SMOLLM2_ALIAS, "parameters": {"temperature": 0, "max_tokens": 3}},
    {"name": "smol-safe", "model": SMOLLM2_ALIAS, "content_safety": True, "parameters": {"max_tokens": 4}},
    {"name": "smol-limited", "model": SMOLLM2_ALIAS, "requests_per_minute": 2, "parameters": {"max_tokens": 2}},
]}
TERMS = {"thresholds": {"violence": "medium", "hate": "medium", "sexual": "medium", "self_harm": "low"},
         "terms": {"violence": {"high": ["kill you"]}}}


@pytest.fixture(scope="module")
def secure(tmp_path_factory, ingot_home, smollm2_dir):
    folder = tmp_path_factory.mktemp("grpc-secure")
    cert, key = tls_certificate(folder)
    signer = SigningKey.generate("key-1")
    (folder / "deployments.json").write_text(json.dumps(DEPLOYMENTS))
    (folder / "terms.json").write_text(json.dumps(TERMS))
    api = start_grpc_mesh(ingot_home, api_key=KEY, args=[
        "--tls-cert", str(cert), "--tls-key", str(key), "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
        "--jwks", str(write_jwks(folder / "jwks.json", signer)), "--deployments", str(folder / "deployments.json"),
        "--content-safety-terms", str(folder / "terms.json")], env={"INGOT_MAX_CONCURRENT_PER_KEY": "1"})
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    channel = grpc.secure_channel(api.address, credentials)
    yield {"api": api, "stub": pb_grpc.IngotServiceStub(channel), "signer": signer, "cert": str(cert)}
    channel.close()
    api.mesh.stop()


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def chat(secure, model: str, text: str, metadata) -> list[pb.ChatResponse]:
    return list(secure["stub"].Chat(pb.ChatRequest(model=model, messages=[pb.Message(role=pb.ROLE_USER, content=text)]),
                                    metadata=metadata, timeout=120))


def test_the_grpc_port_speaks_tls_with_the_edges_certificate(secure):
    assert secure["api"].address.startswith("127.0.0.1:")
    with grpc.insecure_channel(secure["api"].address) as plain:
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.IngotServiceStub(plain).ListModels(pb.ListModelsRequest(), metadata=bearer(KEY), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    names = {m.id for m in secure["stub"].ListModels(pb.ListModelsRequest(), metadata=bearer(KEY), timeout=30).models}
    assert SMOLLM2_ALIAS in names


def test_a_keyless_jwt_in_call_metadata_is_accepted_and_a_forged_one_is_not(secure):
    token = secure["signer"].sign(claims(ISSUER, AUDIENCE))
    assert secure["stub"].ListModels(pb.ListModelsRequest(), metadata=bearer(token), timeout=30).models
    forged = SigningKey.generate("key-1").sign(claims(ISSUER, AUDIENCE))
    with pytest.raises(grpc.RpcError) as caught:
        secure["stub"].ListModels(pb.ListModelsRequest(), metadata=bearer(forged), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_deployments_defaults_apply_to_a_grpc_call(secure):
    responses = chat(secure, "smol-short", "Tell me a story.", bearer(KEY))
    assert responses[-1].usage.completion_tokens == 3
    assert responses[-2].delta.finish_reason == pb.FINISH_REASON_LENGTH


def test_the_content_filter_refuses_a_prompt_with_its_reason_and_field(secure):
    with pytest.raises(grpc.RpcError) as caught:
        chat(secure, "smol-safe", "Tell him I will kill you", bearer(KEY))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert (info.reason, info.metadata["param"]) == ("content_filter", "messages")


def test_a_deployments_rate_limit_is_resource_exhausted(secure):
    codes = []
    for _ in range(3):
        try:
            chat(secure, "smol-limited", "Hi", bearer(KEY))
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED]


def test_grpc_calls_show_in_the_edges_request_metrics(secure):
    chat(secure, "smol-short", "Hi", bearer(KEY))
    context = ssl.create_default_context(cafile=secure["cert"])
    metrics = httpx.get(f"{secure['api'].mesh.base_url}/metrics", verify=context, headers={"api-key": KEY},
                        timeout=30).text
    lines = metrics.splitlines()
    # The call itself, and the route that answered it.
    assert any(line.startswith("ingot_rpc_requests_total") and "ingot.api.v1.IngotService/Chat" in line
               for line in lines)
    assert any(line.startswith("ingot_http_requests_total") and "/v1/chat/completions" in line for line in lines)


def test_the_per_key_concurrency_limit_counts_grpc_calls(secure):
    story = pb.ChatRequest(model=SMOLLM2_ALIAS, messages=[pb.Message(role=pb.ROLE_USER, content="Tell a long story.")],
                           sampling=pb.Sampling(max_tokens=400))
    running = secure["stub"].Chat(story, metadata=bearer(KEY), timeout=120)
    next(running)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            chat(secure, "smol-short", "Hi", bearer(KEY))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(caught.value).reason == "too_many_concurrent_requests"
        # Another credential has its own budget.
        token = secure["signer"].sign(claims(ISSUER, AUDIENCE))
        assert chat(secure, "smol-short", "Hi", bearer(token))[-1].usage.completion_tokens == 3
    finally:
        running.cancel()
