"""Databricks' error body, `{"error_code": "...", "message": "..."}`, for every route of this surface.

The edge's error middleware picks this renderer for the routes the Databricks sub-application owns (its
ERROR_BODY); the status and Retry-After come from the same Failure every shape renders. Only codes that
databricks-sdk and mlflow both know are used: mlflow rebuilds the HTTP status from `error_code` alone and
reports any code it does not know as a 500.
"""

from __future__ import annotations

from typing import Any

from edge.databricks.adapter import Failure

CODES = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_CONFLICT",
    429: "REQUEST_LIMIT_EXCEEDED",
    499: "CANCELLED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_code(failure: Failure) -> str:
    if failure.status == 400:
        # A named parameter is the client's to fix; a body that is not JSON at all is a bad request.
        return "INVALID_PARAMETER_VALUE" if failure.param else "BAD_REQUEST"
    if failure.status in CODES:
        return CODES[failure.status]
    # 405, 413, 415, 422: the request is wrong as sent; 502 and the like: the server is.
    return "BAD_REQUEST" if failure.status < 500 else "INTERNAL_ERROR"


def databricks_body(failure: Failure) -> dict[str, Any]:
    return {"error_code": error_code(failure), "message": failure.message}
