"""When the engine thread admits and what it does while idle: pure policy, no model calls.

- Batch windows: a generator cannot take rows later, so requests arriving together wait briefly to share
  one (`hold`).
- Prompt cache hits: only a lone generator can be rewound, so a hit runs alone when the prefix it saves is
  worth more than a seat in a batch (`runs_alone`).
- Settling kept answers (promptcache.settle) waits for a pause (`settle_in`).
"""

from __future__ import annotations

# The longest a burst may keep its first request waiting, in batch windows.
BURST_WINDOWS = 4
# A prompt cache hit that reuses fewer tokens runs alone only when nothing else would share its batch.
ALONE_REUSE_TOKENS = 256
# How long the engine must have been idle before it settles kept answers, and the answer tokens it settles
# per idle round: a request arriving meanwhile waits for at most one such prefill (about 70 ms on 2 cores).
SETTLE_AFTER_S = 0.25
SETTLE_CHUNK = 32


def hold(arrivals: list[float], now: float, *, window: float, max_batch: int) -> float:
    """How much longer rows that arrived at `arrivals` (batchable together, in arrival order) should wait
    for company, so that requests arriving together share one batch instead of each starting a generator
    of its own.

    A burst reaches the engine spread out: the edge handles its requests one after another, a few ms each.
    So the window runs from the latest arrival and ends once arrivals pause, but never later than
    BURST_WINDOWS windows after the first: a lone request waits one window, a burst of eight lands in one
    batch rather than three."""
    if window <= 0 or len(arrivals) >= max_batch:
        return 0.0
    quiet = window - (now - arrivals[-1])
    cap = window * BURST_WINDOWS - (now - arrivals[0])
    return max(0.0, min(quiet, cap))


def runs_alone(reuse: int, *, batchable: bool, crowded: bool) -> bool:
    """Whether a prompt cache hit that reuses `reuse` tokens runs alone rather than in a batch. A long reuse
    always does; a short one (chat prompts that open alike) saves a few tens of ms of prefill, less than
    a lone row costs a busy engine at every step, so it joins the batch when others are running or
    arriving with it (`crowded`)."""
    return reuse >= ALONE_REUSE_TOKENS or not batchable or not crowded


def settle_in(now: float, last_busy: float, *, busy: bool, unsettled: bool) -> float | None:
    """Seconds until kept answers may be settled; None: nothing to settle, or busy. Only after a pause: a
    client that sends its next request at once (an API caller, a benchmark) never waits behind a settle,
    while a person reading the answer gives it all the time it needs."""
    if busy or not unsettled:
        return None
    return max(0.0, last_busy + SETTLE_AFTER_S - now)
