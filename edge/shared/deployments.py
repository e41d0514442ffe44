"""What a deployment's settings do to a request through it: default parameters, a rate limit, and the
content filter. A name that is not a deployment's gets a policy that does nothing."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from edge.mesh.backends import BACKENDS
from edge.mesh.messages import Deployment, deployment_defaults
from edge.shared.contentsafety import CONTENT_FILTER, ContentFilter, Tagged, check_prompt, watch_output
from edge.openai.parsing import validate
from edge.shared.sharedlimits import SharedLimits, StoreDown
from ingot.common.errors import ResourceExhausted

WINDOW_S = 60.0


class RateLimits:
    """Requests per minute per deployment over a sliding window: across every edge sharing `shared`'s Redis,
    or in this edge process without one (and while it is unreachable)."""

    def __init__(self, shared: SharedLimits | None = None) -> None:
        self._seen: dict[str, deque[float]] = {}
        self._shared = shared

    async def check(self, name: str, per_minute: int) -> None:
        if self._shared is not None:
            try:
                retry_after = await self._shared.admit_rate(name, per_minute)
            except StoreDown:
                pass
            else:
                if retry_after is not None:
                    raise _exceeded(name, per_minute, retry_after)
                # Kept here too, so that were Redis to go away this edge still knows what it admitted.
                self._record(name, time.monotonic())
                return
        self.admit(name, per_minute)

    def _window(self, name: str, now: float) -> deque[float]:
        seen = self._seen.setdefault(name.casefold(), deque())
        while seen and seen[0] <= now - WINDOW_S:
            seen.popleft()
        return seen

    def _record(self, name: str, now: float) -> None:
        self._window(name, now).append(now)

    def admit(self, name: str, per_minute: int, now: float | None = None) -> None:
        """This process's own count."""
        now = time.monotonic() if now is None else now
        seen = self._window(name, now)
        if len(seen) >= per_minute:
            raise _exceeded(name, per_minute, max(1, math.ceil(seen[0] + WINDOW_S - now)))
        seen.append(now)


def _exceeded(name: str, per_minute: int, retry_after: int) -> ResourceExhausted:
    error = ResourceExhausted(f"Requests to the deployment '{name}' have exceeded its rate limit of "
                              f"{per_minute} per minute. Retry after {retry_after} seconds.")
    error.retry_after = retry_after
    return error


RATE_LIMITS = web.AppKey("rate_limits", RateLimits)

@dataclass(frozen=True)
class Policy:
    deployment: Deployment | None
    content_filter: ContentFilter | None

    def with_defaults(self, request: BaseModel) -> BaseModel:
        """The request with the deployment's default parameters where it set none; validated as if sent."""
        defaults = deployment_defaults(self.deployment) if self.deployment is not None else {}
        if not defaults:
            return request
        sent = request.model_dump(exclude_unset=True)
        merged = {**{k: v for k, v in defaults.items() if k in type(request).model_fields}, **sent}
        # A Struct holds every number as a float; strict validation takes an int for a float field but not
        # the reverse, so whole numbers go back to ints.
        for key, value in merged.items():
            if key not in sent and isinstance(value, float) and value.is_integer():
                merged[key] = int(value)
        return validate(type(request), merged)

    def check_prompt(self, texts: Sequence[str], *, param: str) -> None:
        if self.content_filter is not None:
            check_prompt(self.content_filter, texts, param=param)

    def watch(self, messages: AsyncIterator[Tagged], choices: int) -> AsyncIterator[Tagged]:
        if self.content_filter is None:
            return messages
        return watch_output(self.content_filter, messages, choices)


async def policy(request: web.Request, name: str) -> Policy:
    """The policy of the deployment `name` names (none if it names a model), after its rate limit admits
    this request."""
    resolved = await request.config_dict[BACKENDS].resolve(name)
    if not resolved.HasField("deployment"):
        return Policy(None, None)
    deployment = resolved.deployment
    if deployment.requests_per_minute:
        await request.config_dict[RATE_LIMITS].check(deployment.name, deployment.requests_per_minute)
    content_filter = request.config_dict[CONTENT_FILTER] if deployment.content_safety else None
    return Policy(deployment, content_filter)
