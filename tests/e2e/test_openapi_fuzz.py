"""schemathesis against the live mesh, from the edge's own /openapi.json: no request it can make earns a
5xx or an answer outside the description. Bounded in examples and time to keep the suite quick."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = pytest.mark.e2e

# Generation is the slow part on a CPU: any example that reaches the real model makes a few tokens only.
TOKEN_CAP = 4


def test_openapi_describes_the_validating_models(mesh):
    document = httpx.get(f"{mesh.base_url}/openapi.json", timeout=10).json()
    chat = document["components"]["schemas"]["ChatCompletionRequest"]
    assert {"model", "messages"} <= set(chat["required"])
    assert document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["required"]


def _bounded(case) -> None:
    if isinstance(case.body, dict):
        for name in ("max_tokens", "max_completion_tokens"):
            if isinstance(case.body.get(name), int) and case.body[name] > TOKEN_CAP:
                case.body[name] = TOKEN_CAP
        if isinstance(case.body.get("n"), int) and case.body["n"] > 2:
            case.body["n"] = 2


@pytest.mark.timeout(180)
def test_no_request_breaks_the_edge(mesh):
    # Driven by hand rather than through schemathesis' pytest plugin, which does not load under this pytest.
    schema = schemathesis.openapi.from_url(f"{mesh.base_url}/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            _bounded(case)
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance], timeout=60)

        check()
