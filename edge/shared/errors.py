"""The one place where a failure becomes an HTTP answer.

Handlers raise; this middleware renders. An IngotError carries its status, type, code, param and
Retry-After; aiohttp's own HTTP errors (unknown route, wrong method, body too large) and unexpected
exceptions are rendered in the same shape. The shape is chosen per application: OpenAI's by default, and a
sub-application (the Azure routes, say) sets ERROR_BODY to its own renderer, which this same middleware
then uses for every route that sub-application owns. A stream that fails after its headers went out
renders its error event through `error_body` too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ingot.common.errors import IngotError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """What any error shape needs to know about one failure."""

    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    retry_after: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Where a shape wants more than a parameter's name (Azure's 422 names its location and the value sent).
    detail: Mapping[str, Any] | None = None

    @classmethod
    def from_error(cls, error: IngotError) -> Failure:
        return cls(error.http_status, error.message, error.error_type, error.param, error.code, error.retry_after,
                   detail=getattr(error, "detail", None))

    @classmethod
    def unexpected(cls) -> Failure:
        return cls(500, "The server had an error while processing your request; it has been logged.",
                   "server_error")


ErrorBody = Callable[[Failure], dict[str, Any]]
ERROR_BODY = web.AppKey("error_body", ErrorBody)


def openai_body(failure: Failure) -> dict[str, Any]:
    return {"error": {"message": failure.message, "type": failure.type, "param": failure.param,
                      "code": failure.code}}


def error_body(request: web.Request, failure: Failure) -> dict[str, Any]:
    # The innermost application that owns the route and names a shape wins. Not request.config_dict: inside
    # the root application's middleware that view stops at the root application.
    for app in reversed(request.match_info.apps):
        if ERROR_BODY in app:
            return app[ERROR_BODY](failure)
    return openai_body(failure)


def error_response(request: web.Request, failure: Failure) -> web.Response:
    headers = dict(failure.headers)
    if failure.retry_after is not None:
        headers["Retry-After"] = str(failure.retry_after)
    return web.json_response(error_body(request, failure), status=failure.status, headers=headers)


def _from_http(request: web.Request, exc: web.HTTPException) -> Failure:
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    headers = {name: exc.headers[name] for name in ("Allow", "Retry-After") if name in exc.headers}
    if isinstance(exc, web.HTTPNotFound):
        message = f"Invalid URL ({request.method} {request.path})."
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"Method {request.method} is not allowed on {request.path}; use {allowed}."
    else:
        # aiohttp's default text is "413: Request Entity Too Large"; a specific one says more.
        text = exc.text or ""
        message = exc.reason if not text or text.startswith(f"{exc.status}:") else text
    return Failure(exc.status, message, kind, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    try:
        return await handler(request)
    except IngotError as error:
        failure = Failure.from_error(error)
        if failure.status >= 500:
            log.warning("%s %s failed with %d: %s", request.method, request.path, failure.status, failure.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        failure = _from_http(request, exc)
    except ConnectionResetError:
        # The client is gone: there is nobody to answer, and aiohttp closes the connection quietly.
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        failure = Failure.unexpected()
    return error_response(request, failure)
