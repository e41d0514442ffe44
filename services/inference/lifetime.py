"""When loaded models leave memory: idle past their TTL, or least recently used when a load needs room.

Pure decisions over what is loaded; the engine thread carries them out. A model with sequences running
or waiting is busy and never chosen.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol


class Resident(Protocol):
    id: str
    size_bytes: int
    ttl_seconds: int
    last_used: float


def expired(models: Sequence[Resident], busy: Collection[str], now: float) -> list[Resident]:
    return [m for m in models
            if m.ttl_seconds > 0 and m.id not in busy and now - m.last_used >= m.ttl_seconds]


def evictions(models: Sequence[Resident], busy: Collection[str], incoming_bytes: int,
              budget_bytes: int) -> list[Resident] | None:
    """The idle models to unload, oldest use first, so that incoming_bytes fits the budget; None if even
    unloading every idle model would not make room. A budget of 0 means no budget."""
    if budget_bytes <= 0:
        return []
    resident = sum(m.size_bytes for m in models)
    victims: list[Resident] = []
    for model in sorted((m for m in models if m.id not in busy), key=lambda m: m.last_used):
        if resident + incoming_bytes <= budget_bytes:
            break
        victims.append(model)
        resident -= model.size_bytes
    return victims if resident + incoming_bytes <= budget_bytes else None
