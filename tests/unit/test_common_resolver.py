"""The shared model resolver remembers the registry's answers briefly and never remembers a failure."""

from __future__ import annotations

import grpc
import pytest

from ingot.common.errors import InvalidArgument, NotFound
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from ingot.common.resolver import ModelResolver


class FakeRegistry:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []
        self.known = {"smollm2": registry_pb.ModelInfo(id="SmolLM2:1", path="/m")}

    async def ResolveModel(self, request, timeout=None):
        self.calls.append((request.name, timeout))
        model = self.known.get(request.name.casefold())
        if model is None:
            raise grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       details=f"The model '{request.name}' does not exist")
        return registry_pb.ResolveModelResponse(model=model)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry():
    return FakeRegistry()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def resolver(registry, clock):
    return ModelResolver(registry, ttl_s=5.0, timeout_s=10.0, clock=clock)


async def test_a_resolution_is_reused_within_its_time_to_live_whatever_the_case(resolver, registry, clock):
    first = await resolver.resolve("smollm2")
    clock.now += 4.9
    assert await resolver.resolve("SMOLLM2") == first
    assert registry.calls == [("smollm2", 10.0)]


async def test_the_registry_is_asked_again_once_the_answer_is_stale(resolver, registry, clock):
    await resolver.resolve("smollm2")
    clock.now += 5.0
    await resolver.resolve("smollm2")
    assert len(registry.calls) == 2


async def test_a_registry_failure_keeps_its_code_and_is_not_remembered(resolver, registry):
    with pytest.raises(NotFound):
        await resolver.resolve("new-model")
    registry.known["new-model"] = registry_pb.ModelInfo(id="new-model:1")
    assert (await resolver.resolve("new-model")).id == "new-model:1"


async def test_an_empty_name_is_refused_without_asking_the_registry(resolver, registry):
    with pytest.raises(InvalidArgument) as caught:
        await resolver.resolve("")
    assert caught.value.param == "model"
    assert registry.calls == []


async def test_the_whole_answer_is_remembered_for_every_spelling(registry, clock):
    # The edge reads the deployment from the same answer the services read the model from.
    resolver = ModelResolver(registry, clock=clock)
    first = await resolver.resolve_name("smollm2")
    assert await resolver.resolve_name("SmolLM2") is first
    assert len(registry.calls) == 1


async def test_a_full_cache_drops_expired_answers_before_live_ones(registry, clock):
    for name in ("a", "b"):
        registry.known[name] = registry_pb.ModelInfo(id=name)
    resolver = ModelResolver(registry, ttl_s=5.0, limit=2, clock=clock)
    await resolver.resolve("smollm2")
    clock.now += 3.0
    await resolver.resolve("a")
    clock.now += 3.0  # smollm2's answer has expired, a's has not
    await resolver.resolve("b")
    await resolver.resolve("a")
    assert [name for name, _ in registry.calls] == ["smollm2", "a", "b"]


async def test_a_cache_full_of_live_answers_starts_over_rather_than_grow(registry, clock):
    for name in ("a", "b"):
        registry.known[name] = registry_pb.ModelInfo(id=name)
    resolver = ModelResolver(registry, ttl_s=5.0, limit=2, clock=clock)
    for name in ("smollm2", "a", "b", "smollm2"):
        await resolver.resolve(name)
    assert [name for name, _ in registry.calls] == ["smollm2", "a", "b", "smollm2"]
