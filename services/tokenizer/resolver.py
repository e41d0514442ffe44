"""Model names to cached models, through the registry, remembered for a few seconds.

Every tokenizer call names a model; asking the registry each time would double the calls in the mesh for
an answer that changes only when a model is downloaded or deleted. Failures are not remembered, so a model
that has just arrived is found on the next call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from ingot.common.errors import InvalidArgument, error_from_rpc
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc

RESOLVE_TIMEOUT_S = 10.0
RESOLVE_TTL_S = 5.0


class ModelResolver:
    def __init__(self, stub: registry_grpc.RegistryServiceStub, *, ttl_s: float = RESOLVE_TTL_S,
                 timeout_s: float = RESOLVE_TIMEOUT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._stub = stub
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._answers: dict[str, tuple[float, registry_pb.ModelInfo]] = {}

    async def resolve(self, name: str) -> registry_pb.ModelInfo:
        if not name:
            raise InvalidArgument("A model name is required.", param="model")
        # The registry matches names case-insensitively, so one answer serves every spelling.
        key = name.casefold()
        now = self._clock()
        cached = self._answers.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = await self._stub.ResolveModel(registry_pb.ResolveModelRequest(name=name),
                                                     timeout=self._timeout_s)
        except grpc.RpcError as err:
            # NOT_FOUND stays NOT_FOUND with its param, so the edge answers 404 rather than 500.
            raise error_from_rpc(err, service="registry") from None
        self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
        self._answers[key] = (now + self._ttl_s, response.model)
        return response.model
