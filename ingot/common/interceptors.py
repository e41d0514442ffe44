"""What every server interceptor in ingot shares: find the method's behaviour by its kind and wrap it.

ingot's services have unary-unary and unary-stream methods only; a handler of another kind passes through.
An interceptor says how it wraps each kind, and gets the call's details (the method name) to do so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


class BehaviorInterceptor(grpc.aio.ServerInterceptor, ABC):
    @abstractmethod
    def wrap_unary(self, behavior: Behavior,
                   details: grpc.HandlerCallDetails) -> Callable[..., Awaitable[Any]]: ...

    @abstractmethod
    def wrap_stream(self, behavior: Behavior,
                    details: grpc.HandlerCallDetails) -> Callable[..., AsyncIterator[Any]]: ...

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[override]
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self.wrap_unary(handler.unary_unary, handler_call_details))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self.wrap_stream(handler.unary_stream, handler_call_details))
        return handler
