"""Azure's error shapes: a 422 for what the model cannot do, OpenAI's shape (plus `status`) for the rest."""

from __future__ import annotations

from typing import Any

from edge.shared.errors import Failure
from ingot.common.errors import IngotError, InvalidArgument

# Azure's fixed message for a 422 (API.md §3); the reason itself goes in detail.msg.
UNSUPPORTED_MESSAGE = "One of the parameters contain invalid values."


class Unprocessable(InvalidArgument):
    """A 422: the request is valid, but the deployed model cannot do what it asks."""

    http_status = 422

    def __init__(self, reason: str, *, param: str, value: Any, code: str = "parameter_not_supported",
                 message: str = UNSUPPORTED_MESSAGE) -> None:
        super().__init__(message, param=param, code=code)
        self.detail = {"loc": ["body", *_location(param)], "input": value, "msg": reason}


def _location(param: str) -> list[str | int]:
    """"input[2].image" as FastAPI-style location parts: ["input", 2, "image"]."""
    parts: list[str | int] = []
    for piece in param.replace("]", "").split("."):
        name, *indices = piece.split("[")
        parts += [name, *(int(i) for i in indices)]
    return parts


def unsupported(error: IngotError, body: dict[str, Any]) -> IngotError:
    """A service's `parameter_not_supported` refusal as Azure's 422, carrying the value the client sent."""
    if error.code != "parameter_not_supported" or not error.param:
        return error
    return Unprocessable(error.message, param=error.param, value=body.get(error.param))


def azure_body(failure: Failure) -> dict[str, Any]:
    if failure.status == 422:
        return {"status": 422, "code": failure.code, "message": failure.message, "detail": failure.detail}
    return {"error": {"message": failure.message, "type": failure.type, "param": failure.param,
                      "code": failure.code, "status": failure.status}}
