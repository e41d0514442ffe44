"""Model names to what the registry says they mean, remembered for a few seconds: the one resolver the edge
and every service use.

Every call in the mesh names a model; asking the registry each time would double the calls for an answer
that changes only when a model is downloaded, deleted or re-aliased. The policy, decided once here:
- an answer is reused for RESOLVE_TTL_S seconds, short enough that a change is seen almost at once;
- the registry matches names case-insensitively, so one answer serves every spelling (keys are casefolded);
- at most RESOLVE_CACHE_LIMIT names are held: expired answers go first, and a cache still full starts over
  rather than grow (a client can send endless spellings of one alias);
- failures are not remembered, so a model that has just arrived is found on the next call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from ingot.common.errors import InvalidArgument, error_from_rpc
from ingot.registry.v1 import registry_service_pb2 as registry_pb
from ingot.registry.v1 import registry_service_pb2_grpc as registry_grpc

RESOLVE_TTL_S = 5.0
RESOLVE_TIMEOUT_S = 10.0
RESOLVE_CACHE_LIMIT = 1024


class ModelResolver:
    def __init__(self, stub: registry_grpc.RegistryServiceStub, *, ttl_s: float = RESOLVE_TTL_S,
                 timeout_s: float = RESOLVE_TIMEOUT_S, limit: int = RESOLVE_CACHE_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stub = stub
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._limit = limit
        self._clock = clock
        self._answers: dict[str, tuple[float, registry_pb.ResolveModelResponse]] = {}

    async def resolve(self, name: str) -> registry_pb.ModelInfo:
        return (await self.resolve_name(name)).model

    async def resolve_name(self, name: str) -> registry_pb.ResolveModelResponse:
        """The model `name` means and, where it names a deployment, the deployment's settings."""
        if not name:
            raise InvalidArgument("A model name is required.", param="model")
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
        if len(self._answers) >= self._limit:
            self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
            if len(self._answers) >= self._limit:
                self._answers.clear()
        self._answers[key] = (now + self._ttl_s, response)
        return response
