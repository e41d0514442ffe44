"""A generation is started again on another replica only while nothing of it has arrived, and a cut after
that is said to be one."""

from __future__ import annotations

import grpc
import pytest

from edge.mesh.failover import ATTEMPTS, RetriedBeforeFirstMessage
from edge.openai.generation import merged
from edge.mesh.replicas import replica_addresses
from ingot.common.errors import Unavailable
from ingot.inference.v1 import inference_service_pb2 as pb


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="gone")


class Attempt:
    def __init__(self, messages, error: Exception | None = None) -> None:
        self.messages, self.error = messages, error

    async def __aiter__(self):
        for message in self.messages:
            yield message
        if self.error:
            raise self.error


def starter(*attempts: Attempt):
    made = []

    def start() -> Attempt:
        made.append(attempts[len(made)])
        return made[-1]

    return start, made


async def test_a_call_lost_before_its_first_message_goes_to_another_replica() -> None:
    start, made = starter(Attempt([], rpc_error(grpc.StatusCode.UNAVAILABLE)), Attempt(["a", "b"]))
    assert [m async for m in RetriedBeforeFirstMessage(start)] == ["a", "b"]
    assert len(made) == 2


async def test_a_call_lost_after_its_first_message_is_never_repeated() -> None:
    start, made = starter(Attempt(["a"], rpc_error(grpc.StatusCode.UNAVAILABLE)), Attempt(["x"]))
    seen = []
    with pytest.raises(grpc.aio.AioRpcError):
        async for message in RetriedBeforeFirstMessage(start):
            seen.append(message)
    assert seen == ["a"] and len(made) == 1


async def test_only_unavailable_is_retried_and_only_so_many_times() -> None:
    start, made = starter(Attempt([], rpc_error(grpc.StatusCode.INVALID_ARGUMENT)))
    with pytest.raises(grpc.aio.AioRpcError):
        [m async for m in RetriedBeforeFirstMessage(start)]
    assert len(made) == 1
    start, made = starter(*[Attempt([], rpc_error(grpc.StatusCode.UNAVAILABLE)) for _ in range(ATTEMPTS)])
    with pytest.raises(grpc.aio.AioRpcError):
        [m async for m in RetriedBeforeFirstMessage(start)]
    assert len(made) == ATTEMPTS


async def test_a_stream_cut_after_it_started_says_the_answer_is_incomplete() -> None:
    cut = Attempt([pb.GenerateResponse(text="a")], rpc_error(grpc.StatusCode.UNAVAILABLE))
    cut.cancel = lambda: True
    with pytest.raises(Unavailable) as caught:
        [m async for m in merged([cut])]
    assert caught.value.code == "generation_interrupted"
    assert "incomplete" in caught.value.message


async def test_replica_addresses_of_lists_names_and_literals() -> None:
    assert await replica_addresses("ipv4:127.0.0.2:5,127.0.0.3:5") == ["127.0.0.2:5", "127.0.0.3:5"]
    assert await replica_addresses("ipv6:[::1]:5") == ["[::1]:5"]
    assert await replica_addresses("127.0.0.1:50053") == ["127.0.0.1:50053"]
    assert await replica_addresses("dns:///localhost:7") != []
    assert await replica_addresses("unix:/tmp/ingot.sock") == []
