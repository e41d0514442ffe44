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

from edge.shared.sharedlimits import SharedLimits, StoreDown
from ingot.common import metrics
from ingot.common.errors import InvalidArgument, ResourceExhausted

ANONYMOUS = ""


def _key(request: web.Request) -> str:
    return request.headers.get("Authorization") or request.headers.get("api-key") or ANONYMOUS


def concurrency_middleware(total: int, per_key: int, shared: SharedLimits | None = None) -> Callable[..., Any]:
    """`total` holds per edge process (it protects the process); `per_key` across every edge sharing
    `shared`'s Redis, or per process without one (or while it is unreachable)."""
    in_flight: Counter[str] = Counter()
    count = 0
    if shared is not None:
        shared.local_counts = in_flight.copy

    async def take_in_shared(key: str) -> bool | None:
        """Whether the key has room across edges (its slot then taken); None when there is no shared count."""
        if shared is None:
            return None
        try:
            return await shared.acquire(key, per_key)
        except StoreDown:
            return None

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
        # Counted before the shared check, which waits on Redis: requests arriving meanwhile see this one.
        count += 1
        try:
            taken = await take_in_shared(key)
            admitted = taken if taken is not None else in_flight[key] < per_key
            if not admitted:
                metrics.LIMITED.labels("concurrent_requests_per_key").inc()
                raise ResourceExhausted(f"This API key has its limit of {per_key} concurrent requests in flight; "
                                        "retry after one finishes.", code="too_many_concurrent_requests")
            in_flight[key] += 1
            try:
                return await handler(request)
            finally:
                in_flight[key] -= 1
                if not in_flight[key]:
                    del in_flight[key]
                if taken:
                    shared.release_soon(key)
        finally:
            count -= 1

    return limit


def check_token_caps(settings, generate, *, prompt_param: str) -> None:
    """The operator's caps on a request's size, below what the model itself allows (0: no cap)."""
    if settings.max_prompt_tokens and len(generate.prompt_token_ids) > settings.max_prompt_tokens:
        raise InvalidArgument(
            f"The prompt has {len(generate.prompt_token_ids)} tokens; this server accepts at most "
            f"{settings.max_prompt_tokens}.", param=prompt_param, code="prompt_too_long")
    if settings.max_tokens_cap:
        if not generate.sampling.HasField("max_tokens"):
            # Unset would mean "up to the model's own output limit", which may exceed the cap.
            generate.sampling.max_tokens = settings.max_tokens_cap
        elif generate.sampling.max_tokens > settings.max_tokens_cap:
            raise InvalidArgument(
                f"max_tokens is {generate.sampling.max_tokens}; this server generates at most "
                f"{settings.max_tokens_cap} tokens a choice.", param="max_tokens", code="max_tokens_too_large")
