"""A graceful stop: on SIGTERM the edge turns new requests away with 503 while those in flight finish.

Closing the listener at once (aiohttp's own shutdown) would refuse new clients at the TCP level, which
clients read as the server being gone rather than busy, and would give streams no time to end. Draining
keeps the listener open, answers 503 with Retry-After, and stops once the last request in flight is done
or the grace period runs out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ingot.common.errors import Unavailable

# Liveness stays answerable while draining: the process is still up.
_ALWAYS_OPEN = frozenset({"/health"})


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.draining = True

    async def wait(self, grace: float) -> bool:
        """True if every request in flight finished within `grace` seconds."""
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        if self.draining and request.path not in _ALWAYS_OPEN:
            raise Unavailable("The server is shutting down; retry against another instance or shortly.",
                              code="shutting_down")
        self._in_flight += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()


DRAIN = web.AppKey("drain", Drain)
