"""What every Azure route reads the same way: the `extra-parameters` header and the deployment it means."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiohttp import web

from edge.azure.errors import Unprocessable
from ingot.common.errors import InvalidArgument

DEPLOYMENT_HEADER = "azureml-model-deployment"


def extra_parameters(request: web.Request, body: dict[str, Any], *, spec: Collection[str],
                     model_extras: Collection[str]) -> dict[str, Any]:
    """The body after Azure's `extra-parameters` header has had its say about fields outside the spec.

    `error` (the default): any such field is a 422 naming it, as Azure answers. `drop`: they are removed. `pass-through`: the ones the
    model understands (`model_extras`) reach it, and any other is a 422, since the model cannot use it.
    """
    mode = request.headers.get("extra-parameters", "error").strip().lower()
    if mode not in {"error", "drop", "pass-through"}:
        raise InvalidArgument(f"Invalid value for header 'extra-parameters': '{mode}' (use error, drop or "
                              "pass-through).", param="extra-parameters")
    extra = [key for key in body if key not in spec]
    if not extra or mode == "drop":
        return {key: value for key, value in body.items() if key in spec}
    if mode == "error":
        raise Unprocessable(f"Extra parameters {extra} are not allowed when extra-parameters is not set or set "
                            "to 'error'; set it to 'drop' to ignore them or to 'pass-through' to hand them to "
                            "the model.", param=extra[0], value=body[extra[0]], code="extra_parameters_not_allowed",
                            message=f"Extra parameters {extra} are not allowed when extra-parameters is not set "
                                    "or set to 'error'.")
    for key in extra:
        if key not in model_extras:
            raise Unprocessable(f"The model does not accept the parameter '{key}'.", param=key, value=body[key])
    return body


def deployment(request: web.Request, named: str | None) -> str:
    """The deployment a request means: its `model`, else the azureml-model-deployment header."""
    name = named or request.headers.get(DEPLOYMENT_HEADER, "").strip()
    if not name:
        raise InvalidArgument(f"No deployment named: send 'model' in the body or the {DEPLOYMENT_HEADER} header.",
                              param="model")
    return name
