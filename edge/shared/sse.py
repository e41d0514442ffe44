"""Server-sent events as OpenAI streams them: `data:` lines only.

No `event:` lines and no comment pings: the azure-ai-inference stream parser rejects any line that does
not start with "data: ".
"""

from __future__ import annotations

from aiohttp import web

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # Tells nginx-style proxies to pass each event on at once instead of buffering the response.
    "X-Accel-Buffering": "no",
}
DONE = b"data: [DONE]\n\n"


def frame(data: str) -> bytes:
    """One event. Each line of `data` gets its own `data:` field, so a newline can never end it early."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f"data: {line}\n" for line in lines).encode() + b"\n"


class EventStream:
    """The response of one streamed request. Writes raise ConnectionResetError once the client is gone."""

    def __init__(self) -> None:
        self.response = web.StreamResponse(headers=HEADERS)

    async def open(self, request: web.Request) -> None:
        await self.response.prepare(request)

    async def send(self, data: str) -> None:
        await self.response.write(frame(data))

    async def done(self) -> None:
        await self.response.write(DONE)

    async def close(self) -> None:
        await self.response.write_eof()
