"""Query-string parameters of the Foundry Local routes: validated like body fields, unknown ones refused."""

from __future__ import annotations

from aiohttp import web

from ingot.common.errors import InvalidArgument

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def check_query(request: web.Request, allowed: set[str]) -> None:
    for name in request.query:
        if name not in allowed:
            raise InvalidArgument(f"Unsupported parameter: '{name}' is not supported on {request.path}.", param=name)


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE | _FALSE:
        return value in _TRUE
    raise InvalidArgument(f"Invalid value for '{name}': expected true or false, not {request.query[name]!r}.",
                          param=name)


def seconds(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise InvalidArgument(f"Invalid value for '{name}': expected a whole number of seconds, not {value!r}.",
                              param=name)
    return int(value)
