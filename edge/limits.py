"""Concurrency limits: requests in flight per API key and in total, refused with 429 and Retry-After.

Only requests that make work (POST) count: health checks, readiness probes, metrics scrapes and model
listings stay answerable however busy the server is. The key is the credential the client sent
(`Authorization` or Azure's `api-key`); clients that send none share one budget.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ingot.common import metrics
from ingot.common.errors import ResourceExhausted

ANONYMOUS = ""


def _key(request: web.Request) -> str:
    return request.headers.get("Authorization") or request.headers.get("api-key") or ANONYMOUS


def concurrency_middleware(total: int, per_key: int) -> Callable[..., Any]:
    in_flight: Counter[str] = Counter()
    count = 0

    @web.middleware
    async def limit(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        nonlocal count
        if request.method != "POST":
            return await handler(request)
        key = _key(request)
        if count >= total:
            metrics.LIMITED.labels("concurrent_requests").inc()
            raise ResourceExhausted(f"The server is answering its limit of {total} concurrent requests; "
                                    "retry after a moment.", code="too_many_concurrent_requests")
        if in_flight[key] >= per_key:
            metrics.LIMITED.labels("concurrent_requests_per_key").inc()
            raise ResourceExhausted(f"This API key has its limit of {per_key} concurrent requests in flight; "
                                    "retry after one finishes.", code="too_many_concurrent_requests")
        count += 1
        in_flight[key] += 1
        try:
            return await handler(request)
        finally:
            count -= 1
            in_flight[key] -= 1
            if not in_flight[key]:
                del in_flight[key]

    return limit
