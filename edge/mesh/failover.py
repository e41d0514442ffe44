"""A generation whose replica went away before its first message is started again on another replica.

gRPC's own retry policy (ingot.common.channels) covers a call until the server's headers arrive; the
inference service sends those when it admits a request, before generating, so a request admitted and
waiting on a replica that then dies is the edge's to retry. Nothing of it reached the client, so asking
another replica is safe; once a message has arrived the call is never repeated (the client would see a
second answer), and a loss then ends the stream with an error that says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ingot.common import metrics

log = logging.getLogger(__name__)

# Two replicas dying in a row under one request is already rare; the backoff lets the channel notice the
# dead one so the next pick is another.
ATTEMPTS = 3
BACKOFF_S = 0.05


class RetriedBeforeFirstMessage:
    """A server-streaming call made again (up to ATTEMPTS in all) while it fails with UNAVAILABLE before
    its first message. Everything else is the current attempt's own."""

    def __init__(self, start: Callable[[], grpc.aio.UnaryStreamCall]) -> None:
        self._start = start
        self._call = start()
        self._cancelled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    def cancel(self) -> bool:
        self._cancelled = True
        return self._call.cancel()

    async def __aiter__(self) -> AsyncIterator[Any]:
        attempt = 1
        while True:
            messages = self._call.__aiter__()
            try:
                first = await anext(messages)
            except StopAsyncIteration:
                return
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt >= ATTEMPTS or self._cancelled:
                    raise
                log.warning("a generation's replica went away before its first token (%s); asking another",
                            error.details())
                metrics.GENERATE_RETRIES.inc()
                await asyncio.sleep(BACKOFF_S * attempt)
                attempt += 1
                self._call = self._start()
                continue
            break
        yield first
        async for message in messages:
            yield message
