"""The one error mapping: exception family → gRPC status → HTTP status.

A service raises an `IngotError` subclass; `ErrorInterceptor` turns it into a gRPC status carrying a
`google.rpc.ErrorInfo` (reason and the offending parameter); the caller's `error_from_rpc` turns that
status back into the same subclass, whose `http_status` the edge answers with. OpenAI's and Azure's JSON
shapes are rendered by the edge from these fields.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from ingot.common.interceptors import Behavior, BehaviorInterceptor

log = logging.getLogger(__name__)

ERROR_DOMAIN = "ingot"
_DETAILS_KEY = "grpc-status-details-bin"


class IngotError(Exception):
    """Base of every error that crosses a process boundary with its meaning intact."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    http_status: ClassVar[int] = 500
    # OpenAI's `error.type`.
    error_type: ClassVar[str] = "server_error"
    # OpenAI's `error.code` when the raiser gives none.
    default_code: ClassVar[str | None] = None
    # Seconds a client should wait before retrying, sent as Retry-After.
    retry_after: ClassVar[int | None] = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code


class InvalidArgument(IngotError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    error_type = "invalid_request_error"


class OutOfRange(InvalidArgument):
    grpc_code = grpc.StatusCode.OUT_OF_RANGE


class FailedPrecondition(InvalidArgument):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(IngotError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDenied(IngotError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    error_type = "permission_error"


class NotFound(IngotError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    error_type = "invalid_request_error"


class AlreadyExists(IngotError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409
    error_type = "invalid_request_error"


class Aborted(AlreadyExists):
    grpc_code = grpc.StatusCode.ABORTED


class ResourceExhausted(IngotError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    retry_after = 1


class Cancelled(IngotError):
    grpc_code = grpc.StatusCode.CANCELLED
    # nginx's "client closed request": nobody is left to read it, but logs should not call it a 5xx.
    http_status = 499
    error_type = "invalid_request_error"


class Unimplemented(IngotError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501
    error_type = "invalid_request_error"


class Internal(IngotError):
    grpc_code = grpc.StatusCode.INTERNAL


class Unknown(Internal):
    grpc_code = grpc.StatusCode.UNKNOWN


class DataLoss(Internal):
    grpc_code = grpc.StatusCode.DATA_LOSS


class Unavailable(IngotError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    error_type = "service_unavailable"
    default_code = "service_unavailable"
    retry_after = 1


class DeadlineExceeded(IngotError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    error_type = "timeout"
    default_code = "timeout"


def _leaf_classes() -> dict[grpc.StatusCode, type[IngotError]]:
    table: dict[grpc.StatusCode, type[IngotError]] = {}
    pending: list[type[IngotError]] = [IngotError]
    while pending:
        cls = pending.pop()
        table.setdefault(cls.grpc_code, cls)
        pending.extend(cls.__subclasses__())
    # INTERNAL is claimed by the base first; keep the concrete class so isinstance checks read naturally.
    table[grpc.StatusCode.INTERNAL] = Internal
    return table


BY_GRPC_CODE: dict[grpc.StatusCode, type[IngotError]] = _leaf_classes()


def _by_http_status() -> dict[int, type[IngotError]]:
    table: dict[int, type[IngotError]] = {}
    pending: list[type[IngotError]] = [IngotError]
    while pending:
        cls = pending.pop(0)
        # Breadth first: a status maps to the most general class that answers with it.
        table.setdefault(cls.http_status, cls)
        pending.extend(cls.__subclasses__())
    table[500] = Internal
    return table


BY_HTTP_STATUS: dict[int, type[IngotError]] = _by_http_status()


def error_from_http(status: int, message: str, *, param: str | None = None, code: str | None = None) -> IngotError:
    """The IngotError an HTTP error answer stands for (the inverse of `http_status`), for the public gRPC API,
    which relays the REST routes' answers."""
    cls = BY_HTTP_STATUS.get(status) or (InvalidArgument if 400 <= status < 500 else Internal)
    return cls(message, param=param, code=code)


def to_trailing_metadata(error: IngotError) -> tuple[tuple[str, bytes], ...]:
    info = error_details_pb2.ErrorInfo(reason=error.code or "", domain=ERROR_DOMAIN)
    if error.param:
        info.metadata["param"] = error.param
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=error.grpc_code.value[0], message=error.message, details=[detail])
    return ((_DETAILS_KEY, status.SerializeToString()),)


def error_from_rpc(err: grpc.RpcError, *, service: str | None = None) -> IngotError:
    """The IngotError a failed call stands for, with the parameter and code its raiser attached."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    cls = BY_GRPC_CODE.get(code, Internal)
    message = (err.details() if hasattr(err, "details") else None) or str(code)
    param = reason = None
    metadata = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in metadata or ():
        if key != _DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                param = info.metadata.get("param") or None
                reason = info.reason or None
    if reason is None and service and cls in (Unavailable, DeadlineExceeded):
        # The raiser never saw this call (the process is down or hung): say which part of the mesh failed.
        detail = "is unavailable" if cls is Unavailable else "did not answer in time"
        message = f"The {service} service {detail}; try again shortly."
    return cls(message, param=param, code=reason)


async def _abort(context: grpc.aio.ServicerContext, error: IngotError) -> None:
    await context.abort(error.grpc_code, error.message, trailing_metadata=to_trailing_metadata(error))


def _unexpected(context: grpc.aio.ServicerContext, exc: Exception) -> IngotError:
    log.exception("unhandled error in %s", getattr(context, "_rpc_method", "an RPC"), exc_info=exc)
    return Internal("The server hit an unexpected error; it has been logged.")


def _wrap_unary(behavior: Behavior) -> Callable[..., Awaitable[Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except IngotError as error:
            await _abort(context, error)
        except Exception as exc:  # noqa: BLE001 - the last line that keeps a bug from becoming UNKNOWN
            await _abort(context, _unexpected(context, exc))

    return unary


def _wrap_stream(behavior: Behavior) -> Callable[..., AsyncIterator[Any]]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except IngotError as error:
            await _abort(context, error)
        except Exception as exc:  # noqa: BLE001
            await _abort(context, _unexpected(context, exc))

    return stream


class ErrorInterceptor(BehaviorInterceptor):
    """Maps every IngotError a handler raises to its gRPC status; anything else becomes INTERNAL."""

    def wrap_unary(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Callable[..., Awaitable[Any]]:
        return _wrap_unary(behavior)

    def wrap_stream(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Callable[..., AsyncIterator[Any]]:
        return _wrap_stream(behavior)
