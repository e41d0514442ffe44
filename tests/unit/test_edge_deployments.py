from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from edge.shared.deployments import Policy, RateLimits
from edge.openai.schemas import ChatCompletionRequest
from ingot.common.errors import ResourceExhausted
from ingot.registry.v1 import registry_service_pb2 as pb


def test_the_rate_limit_admits_per_minute_then_answers_retry_after():
    limits = RateLimits()
    limits.admit("d", 2, now=100.0)
    limits.admit("D", 2, now=110.0)
    with pytest.raises(ResourceExhausted) as caught:
        limits.admit("d", 2, now=130.0)
    assert caught.value.retry_after == 30
    limits.admit("d", 2, now=161.0)


def test_defaults_apply_only_where_the_request_set_nothing():
    defaults = struct_pb2.Struct()
    defaults.update({"temperature": 0.3, "max_tokens": 50, "top_k": 4, "not_a_parameter": 1})
    policy = Policy(pb.Deployment(name="d", model="m", default_parameters=defaults), None)
    request = ChatCompletionRequest.model_validate({"model": "d", "messages": [{"role": "user", "content": "hi"}],
                                                    "temperature": 1.0})
    applied = policy.with_defaults(request)
    assert (applied.temperature, applied.max_tokens, applied.top_k) == (1.0, 50, 4)
    assert applied.messages[0].text() == "hi"
