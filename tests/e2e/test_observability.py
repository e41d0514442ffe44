"""Observability and limits against the real mesh: one trace across the processes, the request id in
every service's logs, Prometheus metrics on the edge and on each service, and the edge's limits."""

from __future__ import annotations

import json
import threading
import time

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.conftest import SMOLLM2_ALIAS
from tests.e2e.mesh import Mesh, free_port_run

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Say hello."}]
STORY = [{"role": "user", "content": "Write a very long story about a dragon who learns to paint."}]


@pytest.fixture(scope="module")
def watched(ingot_home, smollm2_dir, tmp_path_factory):
    spans = tmp_path_factory.mktemp("trace") / "spans.jsonl"
    # The registry takes this port and the tokenizer, inference and embeddings services the next three.
    metrics_port = free_port_run(4)
    running = Mesh(ingot_home, args=["--log-level", "debug", "--metrics-port", str(metrics_port)],
                   env={"INGOT_TRACE_FILE": str(spans), "INGOT_MAX_CONCURRENT_PER_KEY": "1",
                        "INGOT_MAX_BODY_BYTES": str(64 * 1024),
                        "INGOT_RESPONSES_DB": str(tmp_path_factory.mktemp("responses") / "responses.sqlite3")}).start()
    running.spans = spans
    running.metrics_port = metrics_port
    yield running
    running.stop()


def _spans(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _chat(mesh: Mesh, headers: dict | None = None, **body) -> httpx.Response:
    body = {"model": SMOLLM2_ALIAS, "messages": HELLO, "max_tokens": 4, **body}
    return httpx.post(f"{mesh.base_url}/v1/chat/completions", json=body, headers=headers or {}, timeout=60)


def test_one_request_is_one_connected_trace_across_the_processes(watched):
    reply = _chat(watched, {"x-request-id": "trace-me-1"})
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "trace-me-1"
    deadline = time.monotonic() + 10
    while True:
        spans = _spans(watched.spans)
        roots = [s for s in spans if s["attributes"].get("ingot.request_id") == "trace-me-1"
                 and s["resource"]["attributes"]["service.name"] == "ingot-edge"]
        if roots:
            trace_id = roots[0]["context"]["trace_id"]
            trace = [s for s in spans if s["context"]["trace_id"] == trace_id]
            if {"ingot-inference", "ingot-tokenizer"} <= {s["resource"]["attributes"]["service.name"] for s in trace}:
                break
        assert time.monotonic() < deadline, "the services' spans of the request never appeared"
        time.sleep(0.2)
    root = roots[0]
    assert root["parent_id"] is None
    assert root["attributes"]["gen_ai.request.model"] == SMOLLM2_ALIAS
    assert root["attributes"]["gen_ai.usage.output_tokens"] == 4
    assert root["attributes"]["gen_ai.server.time_to_first_token"] > 0
    by_id = {s["context"]["span_id"]: s for s in trace}
    for span in trace:
        if span is not root:
            assert span["parent_id"] in by_id, f"{span['name']} hangs off a span outside the trace"
    generate = next(s for s in trace if s["resource"]["attributes"]["service.name"] == "ingot-inference"
                    and s["name"].endswith("/Generate"))
    # The inference server span is the child of the edge's client span for the same call.
    assert by_id[generate["parent_id"]]["resource"]["attributes"]["service.name"] == "ingot-edge"
    assert generate["attributes"]["ingot.request_id"] == "trace-me-1"


def test_request_id_reaches_every_service_log_and_azure_header_is_honoured(watched):
    reply = _chat(watched, {"x-ms-client-request-id": "azure-id-7"})
    assert reply.headers["x-ms-client-request-id"] == "azure-id-7"
    assert reply.headers["x-request-id"] == "azure-id-7"
    made = _chat(watched)
    assert len(made.headers["x-request-id"]) >= 16

    def logged_by() -> set[str]:
        found = set()
        for line in list(watched.lines):
            text = line.split("] ", 1)[-1]
            if text.startswith("{") and '"azure-id-7"' in text:
                found.add(json.loads(text)["process"])
        return found

    watched.wait_for(lambda: {"tokenizer", "inference"} <= logged_by(), 10, "the services' log lines")


def test_metrics_on_the_edge_and_on_each_service(watched):
    assert _chat(watched).status_code == 200
    text = httpx.get(f"{watched.base_url}/metrics", timeout=10).text
    assert 'ingot_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in text
    assert "ingot_time_to_first_token_seconds_count" in text
    assert "ingot_generation_tokens_per_second_bucket" in text
    assert "ingot_loaded_models 1.0" in text
    inference = httpx.get(f"http://127.0.0.1:{watched.metrics_port + 2}/metrics", timeout=10).text
    assert 'ingot_rpc_requests_total{code="OK",method="/ingot.inference.v1.InferenceService/Generate"}' in inference
    tokenizer = httpx.get(f"http://127.0.0.1:{watched.metrics_port + 1}/metrics", timeout=10).text
    assert "ingot_rpc_duration_seconds_bucket" in tokenizer


def _counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_a_shared_system_prompt_is_answered_from_the_prompt_cache_and_counted(watched):
    system = {"role": "system", "content": "You answer questions about the solar system in one short sentence, "
              "with numbers in metric units, and you never guess: if a figure is unknown, you say so. " * 2}
    url = f"http://127.0.0.1:{watched.metrics_port + 2}/metrics"
    assert _chat(watched, messages=[system, {"role": "user", "content": "How far is Mars?"}]).status_code == 200
    before = httpx.get(url, timeout=10).text
    assert _chat(watched, messages=[system, {"role": "user", "content": "How big is Venus?"}]).status_code == 200
    after = httpx.get(url, timeout=10).text
    assert _counter(after, "ingot_prompt_cache_hits_total") == _counter(before, "ingot_prompt_cache_hits_total") + 1
    assert (_counter(after, "ingot_prompt_cache_reused_tokens_total")
            - _counter(before, "ingot_prompt_cache_reused_tokens_total")) >= 40
    assert "ingot_prompt_cache_bytes" in after and "ingot_prompt_cache_entries" in after


def test_a_continued_response_is_answered_from_the_prompt_cache(watched):
    # previous_response_id replays the stored turn ahead of the new input, so the first turn's whole prompt is a
    # prefix of the second's: the inference service rewinds the kept generator instead of prefilling it again.
    url = f"http://127.0.0.1:{watched.metrics_port + 2}/metrics"
    first = httpx.post(f"{watched.base_url}/v1/responses", timeout=60, json={
        "model": SMOLLM2_ALIAS, "input": "Name the largest planet of the solar system.", "max_output_tokens": 12})
    assert first.status_code == 200, first.text
    before = httpx.get(url, timeout=10).text
    second = httpx.post(f"{watched.base_url}/v1/responses", timeout=60, json={
        "model": SMOLLM2_ALIAS, "previous_response_id": first.json()["id"], "input": "And the smallest?",
        "max_output_tokens": 4})
    assert second.status_code == 200, second.text
    after = httpx.get(url, timeout=10).text
    assert _counter(after, "ingot_prompt_cache_hits_total") == _counter(before, "ingot_prompt_cache_hits_total") + 1
    assert (_counter(after, "ingot_prompt_cache_reused_tokens_total")
            - _counter(before, "ingot_prompt_cache_reused_tokens_total")) >= first.json()["usage"]["input_tokens"]


def test_a_body_over_the_limit_is_a_413(watched):
    reply = _chat(watched, messages=[{"role": "user", "content": "x" * 100_000}])
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_concurrent_requests_over_the_per_key_limit_get_429_with_retry_after(watched):
    started = threading.Event()

    def long_stream() -> None:
        body = {"model": SMOLLM2_ALIAS, "messages": STORY, "max_tokens": 300, "stream": True}
        with httpx.stream("POST", f"{watched.base_url}/v1/chat/completions", json=body,
                          headers={"Authorization": "Bearer one"}, timeout=120) as stream:
            for _ in stream.iter_lines():
                started.set()

    worker = threading.Thread(target=long_stream)
    worker.start()
    assert started.wait(60)
    refused = _chat(watched, {"Authorization": "Bearer one"})
    other_key = _chat(watched, {"Authorization": "Bearer two"})
    worker.join()
    assert refused.status_code == 429
    assert refused.headers["Retry-After"]
    assert refused.json()["error"]["code"] == "too_many_concurrent_requests"
    assert other_key.status_code == 200


@pytest.mark.parametrize("service", ["registry", "tokenizer", "inference", "embeddings"])
def test_every_service_answers_grpc_reflection_as_grpcurl_asks(watched, service):
    # What `grpcurl -plaintext ADDR list` and `describe` send: the reflection service's own protocol.
    name = f"ingot.{service}.v1.{service.capitalize()}Service"
    with grpc.insecure_channel(watched.addresses[service]) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {name, "grpc.health.v1.Health"} <= set(database.get_services())
        described = descriptor_pool.DescriptorPool(database).FindServiceByName(name)
        assert described.methods
