"""The one place the public gRPC API reaches the rest of the edge: each call is handed to the REST route that
answers it, in this same process, over the loopback connection the edge listens on.

Going through the route itself (rather than calling its parts) is what makes the two surfaces one: the same
middlewares see the call (tracing, request ids, metrics, drain, auth, the concurrency limits), then the same
handler (deployments, content safety, rate limits, validation, the error mapping). The caller's credentials,
request id and trace context travel as the headers a REST client would send. Closing the response (the gRPC
call was cancelled) closes the connection, and the edge cancels the handler and its generation, exactly as
for a REST client that goes away.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
from opentelemetry import propagate

from ingot.common.errors import BY_HTTP_STATUS, Internal, error_from_http
from ingot.common.telemetry import REQUEST_ID

# The caller's credentials, as a REST client would send them; everything else stays with the gRPC call.
FORWARDED = ("authorization", "api-key")
_USER_AGENT = "ingot-grpc-api/1"


def loopback_url(host: str, port: int, tls: bool) -> str:
    # A wildcard bind is reachable on loopback; any other host is where the edge listens.
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def headers_from(metadata: Sequence[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """The headers of the REST call that answers a gRPC call with this metadata, made inside its handler: the
    call's request id (taken from its `x-request-id` or made up by the server's interceptor) and its trace
    context, so the gRPC span is the parent of the route's and logs of both carry one id."""
    headers = {"User-Agent": _USER_AGENT}
    for key, value in metadata or ():
        if key.lower() in FORWARDED and isinstance(value, str):
            headers[key.lower()] = value
    request_id = REQUEST_ID.get()
    if request_id:
        headers["x-request-id"] = request_id
    propagate.inject(headers)
    return headers


async def _raise_for(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    text = await response.text()
    try:
        error = json.loads(text)["error"]
        message, param, code = error["message"], error.get("param"), error.get("code")
    except (ValueError, KeyError, TypeError):
        message, param, code = text.strip() or response.reason or f"HTTP {response.status}", None, None
    raise error_from_http(response.status, message, param=param, code=code)


def raise_for_event(event: dict[str, Any]) -> None:
    # A failure after the stream opened arrives as one event in place of [DONE], in the route's error shape.
    error = event.get("error")
    if isinstance(error, dict):
        # No status line comes with it: the error's type stands for the most general status that sends it.
        status = next((cls.http_status for cls in BY_HTTP_STATUS.values() if cls.error_type == error.get("type")),
                      500)
        raise error_from_http(status, str(error.get("message")), param=error.get("param"), code=error.get("code"))


class RestPipeline:
    """Calls the edge's own REST routes; opened and closed with the edge's gRPC server."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        # The edge's own certificate names its public host, not loopback: this hop checks neither, as it
        # never leaves the process's host.
        tls: ssl.SSLContext | bool = False if self.base_url.startswith("https") else True
        connector = aiohttp.TCPConnector(limit=0, ssl=tls)
        # No overall timeout: a generation may stream for minutes; the edge's own deadlines apply.
        self._session = aiohttp.ClientSession(self.base_url, connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, headers: Mapping[str, str]) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get(path, headers=headers) as response:
            await _raise_for(response)
            return await response.json()

    async def post(self, path: str, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.post(path, json=body, headers=headers) as response:
            await _raise_for(response)
            return await response.json()

    async def stream(self, path: str, body: dict[str, Any], headers: Mapping[str, str]) -> AsyncIterator[dict]:
        """The JSON events of a streamed answer, up to [DONE]."""
        assert self._session is not None
        response = await self._session.post(path, json=body, headers=headers)
        try:
            await _raise_for(response)
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if not line.startswith("data: "):
                    continue
                data = line[len("data: "):]
                if data == "[DONE]":
                    return
                event = json.loads(data)
                raise_for_event(event)
                yield event
            raise Internal("The answer stream ended before it was complete.")
        finally:
            # Closing (not releasing) drops the connection, which is what tells the edge to stop generating
            # when the call ends early.
            response.close()
