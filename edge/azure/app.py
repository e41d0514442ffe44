"""The Azure sub-application: its routes, served bare and under `/models`, and the `api-version` they need.

One aiohttp sub-application owns every Azure route, so the error middleware renders Azure's error shapes
for exactly these paths (edge/shared/errors.py picks the shape by the owning application's ERROR_BODY).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRuleMatching, MatchedSubAppResource

from edge.azure import chat, embeddings, info
from edge.azure.errors import azure_body
from edge.shared.errors import ERROR_BODY
from ingot.common.errors import InvalidArgument

# Each Azure API area's routes, written without the /models prefix; chat and completions go here too.
ROUTE_TABLES: list[web.RouteTableDef] = [chat.routes, embeddings.routes, info.routes]
# https://<resource>.services.ai.azure.com/models/... is the same API under a prefix.
PREFIXES = ("", "/models")
API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
# The versions the azure-ai-inference SDK sends: its default preview and the GA version.
API_VERSIONS = ("2024-05-01-preview", "2025-04-01")


@web.middleware
async def require_api_version(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    # An unknown method or path answers as such first.
    if request.match_info.http_exception is None:
        version = request.query.get("api-version")
        if version is None:
            raise InvalidArgument("Missing required query parameter: 'api-version' (for example "
                                  "?api-version=2024-05-01-preview).", param="api-version")
        if not API_VERSION.fullmatch(version):
            raise InvalidArgument(f"Invalid value for 'api-version': '{version}' is not of the form YYYY-MM-DD or "
                                  "YYYY-MM-DD-preview.", param="api-version")
        if version not in API_VERSIONS:
            raise InvalidArgument(f"Unsupported api-version '{version}'; this server supports "
                                  f"{', '.join(API_VERSIONS)}.", param="api-version", code="unsupported_api_version")
    return await handler(request)


def create_azure_app() -> web.Application:
    app = web.Application(middlewares=[require_api_version])
    app[ERROR_BODY] = azure_body
    for table in ROUTE_TABLES:
        for route in table:
            for prefix in PREFIXES:
                app.router.add_route(route.method, prefix + route.path, route.handler, **route.kwargs)
    return app


class OwnPaths(AbstractRuleMatching):
    """Matches the paths the sub-application has routes for, so every other path stays the root's."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def _paths(self) -> set[str]:
        return {resource.canonical for resource in self._app.router.resources()}

    async def match(self, request: web.Request) -> bool:
        return request.path in self._paths()

    def get_info(self) -> dict[str, Any]:
        return {"paths": sorted(self._paths())}

    @property
    def canonical(self) -> str:
        return "azure"


def mount(root: web.Application) -> web.Application:
    """Adds the Azure sub-application to `root`. aiohttp's public add_subapp needs a non-empty prefix and the
    bare routes have none, so this mounts it the way add_domain does, with a rule that matches its paths."""
    azure = create_azure_app()
    root._add_subapp(partial(MatchedSubAppResource, OwnPaths(azure), azure), azure)  # noqa: SLF001
    return azure
