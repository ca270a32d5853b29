"""``lru`` and ``priority``: which idle, unpinned residents to unload, and no more than needed."""

from __future__ import annotations

from cortex_kernel.eviction import EvictionRequest, Resident


def _least_recent_first(resident: Resident) -> tuple[float, str]:
    # Never used sorts before any use; the id breaks ties so choices are deterministic.
    return (resident.last_used or 0.0, resident.id)


def _take_until(order: list[Resident], needed: int) -> list[str] | None:
    chosen, freed = [], 0
    for resident in order:
        if freed >= needed:
            break
        chosen.append(resident.id)
        freed += resident.memory_bytes
    return chosen if freed >= needed else None


class LeastRecentlyUsed:
    """Unload the models used longest ago until the incoming model fits."""

    name = "lru"

    def choose(self, request: EvictionRequest) -> list[str] | None:
        return _take_until(sorted(request.residents, key=_least_recent_first), request.needed_bytes)


class Priority:
    """Unload only residents whose priority is ≤ the incoming model's, lowest priority first.

    Equal priority counts, so peers can swap each other out; among equals the least recently
    used goes first.
    """

    name = "priority"

    def choose(self, request: EvictionRequest) -> list[str] | None:
        allowed = [r for r in request.residents if r.priority <= request.incoming_priority]
        order = sorted(allowed, key=lambda r: (r.priority, *_least_recent_first(r)))
        return _take_until(order, request.needed_bytes)
