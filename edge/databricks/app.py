"""The Databricks sub-application: every route under /api/2.0/serving-endpoints and /serving-endpoints, and
the host-metadata probe.

One aiohttp sub-application owns these paths, so the edge's error middleware renders Databricks' error body
for all of them, aiohttp's own 404 and 405 included (edge/errors.py picks the shape by the owning
application's ERROR_BODY).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRuleMatching, MatchedSubAppResource

from edge.databricks import endpoints, invocations, openai_compat
from edge.databricks.adapter import ERROR_BODY
from edge.databricks.errors import databricks_body

ROUTE_TABLES: list[web.RouteTableDef] = [endpoints.routes, invocations.routes, openai_compat.routes]
PREFIXES = (endpoints.LIST_PATH, "/serving-endpoints")


def create_databricks_app() -> web.Application:
    app = web.Application()
    app[ERROR_BODY] = databricks_body
    for table in ROUTE_TABLES:
        app.add_routes(table)
    return app


class UnderPrefixes(AbstractRuleMatching):
    """Matches every path under the Databricks prefixes (routes or not, so an unknown one is a Databricks
    404) and the host-metadata path."""

    async def match(self, request: web.Request) -> bool:
        path = request.path
        return path == endpoints.HOST_METADATA_PATH or any(
            path == prefix or path.startswith(prefix + "/") for prefix in PREFIXES)

    def get_info(self) -> dict[str, Any]:
        return {"prefixes": [*PREFIXES, endpoints.HOST_METADATA_PATH]}

    @property
    def canonical(self) -> str:
        return "databricks"


def mount(root: web.Application) -> web.Application:
    """Adds the Databricks sub-application to `root`. Its paths have two prefixes, one more than aiohttp's
    add_subapp takes, so it is mounted the way add_domain mounts one, with a rule that matches them."""
    databricks = create_databricks_app()
    root._add_subapp(partial(MatchedSubAppResource, UnderPrefixes(), databricks), databricks)  # noqa: SLF001
    return databricks
