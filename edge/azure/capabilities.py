"""The one check of what a deployed model can do with a request's parameters, before the request runs.

A parameter the API defines but this model cannot act on is a 422 naming it (Azure's
`parameter_not_supported`, with `detail.loc`), and so is a parameter of the API this server does not
implement for any model. The schema the route validates with says what is implemented; the registry says
what the model does. `tools` needs nothing of the model: the call format is enforced by a grammar, and a
chat template without a tools section gets ingot's own (services/tokenizer/tools.py), so every chat model
calls tools, whatever its manifest's SupportsToolCalling says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from edge.azure.errors import Unprocessable
from edge.mesh.messages import ModelInfo

# Parameters that need something of the model, and how to tell whether it has it. None do today.
NEEDS: Mapping[str, tuple[Callable[[ModelInfo], bool], str]] = {}


def refuse_unsupported(model: ModelInfo, body: Mapping[str, Any], schema: type[BaseModel]) -> None:
    for name, value in body.items():
        if value is None:
            continue
        need = NEEDS.get(name)
        if need is not None and not need[0](model):
            raise Unprocessable(f"The model '{model.id}' {need[1]}, so it cannot take '{name}'.", param=name,
                                value=value)
        if name not in schema.model_fields:
            raise Unprocessable(f"The parameter '{name}' is not supported for the model '{model.id}' by this "
                                "server.", param=name, value=value)
