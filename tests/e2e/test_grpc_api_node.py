"""The public gRPC API from Node.js: tests/e2e/node/grpc_api_check.js, with stock @grpc/grpc-js and
@grpc/proto-loader from npm (`make node-packages`) and only the repository's .proto files, against
`ingot serve --grpc-port` with API keys on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import MINILM_ALIAS, SMOLLM2_ALIAS, SMOLLM2_ID
from tests.e2e.grpcapi import API_KEY, ORDER, WEATHER, start_grpc_mesh

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).parent / "node"
REPO = NODE_DIR.parents[2]


@pytest.fixture(scope="module")
def report(ingot_home, smollm2_dir, minilm_dir) -> dict:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed; `make test` installs it with the npm packages this test uses")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("the Node.js packages are missing: run `make node-packages` (part of `make setup`)")
    api = start_grpc_mesh(ingot_home)
    try:
        config = {"address": api.address, "key": API_KEY, "chat_model": SMOLLM2_ALIAS, "embed_model": MINILM_ALIAS,
                  "tool_schema": WEATHER, "answer_schema": ORDER}
        done = subprocess.run(["node", str(NODE_DIR / "grpc_api_check.js"), json.dumps(config)], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
    finally:
        api.mesh.stop()
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_node_streams_a_chat_answer(report):
    chat = report["chat"]["ok"]
    assert chat["role"] == "ROLE_ASSISTANT" and chat["text"].strip()
    assert chat["finish_reason"] in ("FINISH_REASON_STOP", "FINISH_REASON_LENGTH")
    assert 1 <= chat["usage"]["completion_tokens"] <= 12 and chat["messages"] > 2


def test_node_gets_a_required_tool_call_whose_arguments_validate(report):
    answer = report["tool_call"]["ok"]
    assert answer["finish_reason"] == "FINISH_REASON_TOOL_CALLS" and answer["calls"]
    for call in answer["calls"]:
        assert call["id"] and call["name"] == "get_weather"
        jsonschema.validate(json.loads(call["arguments"]), WEATHER)


def test_node_gets_a_json_schema_answer_that_validates(report):
    answer = report["json_schema"]["ok"]
    assert answer["finish_reason"] == "FINISH_REASON_STOP"
    jsonschema.validate(json.loads(answer["text"]), ORDER)


def test_node_gets_embeddings(report):
    embedding = report["embedding"]["ok"]
    assert embedding["vectors"] == [384, 384]
    assert all(abs(norm - 1) < 1e-3 for norm in embedding["norms"])


def test_node_lists_the_models(report):
    assert {SMOLLM2_ALIAS, SMOLLM2_ID, MINILM_ALIAS} <= set(report["models"]["ok"])


def test_node_without_a_key_is_unauthenticated(report):
    error = report["no_key"]["error"]
    assert error["code"] == "UNAUTHENTICATED" and error["reason"] == "invalid_api_key"


def test_node_asking_for_an_unknown_model_is_not_found(report):
    error = report["unknown_model"]["error"]
    assert (error["code"], error["reason"], error["param"]) == ("NOT_FOUND", "model_not_found", "model")
