"""``lru`` and ``priority``: which idle, unpinned residents to move out, and no more than needed.

Both use the sleep tier: a victim goes to sleep (host RAM, woken in seconds) while the node's
host RAM holds it and its profile allows it, and is unloaded otherwise. Residents that just
evicted the incoming model from this node (``shielded``) go last, so two models do not take
turns evicting each other while anything else could make room.
"""

from __future__ import annotations

from cortex_kernel.eviction import EvictionRequest, Resident, Victim


def _least_recent_first(resident: Resident) -> tuple[bool, float, str]:
    # Never used sorts before any use; the id breaks ties so choices are deterministic.
    return (resident.shielded, resident.last_used or 0.0, resident.id)


def _take_until(order: list[Resident], request: EvictionRequest) -> list[str | Victim] | None:
    chosen: list[str | Victim] = []
    freed = slept = 0
    room = request.host_free_bytes
    for resident in order:
        if freed >= request.needed_bytes:
            break
        if resident.can_sleep and (room is None or slept + resident.memory_bytes <= room):
            chosen.append(Victim(id=resident.id, action="sleep"))
            slept += resident.memory_bytes
        else:
            chosen.append(Victim(id=resident.id, action="unload"))
        freed += resident.memory_bytes
    return chosen if freed >= request.needed_bytes else None


class LeastRecentlyUsed:
    """Move out the models used longest ago until the incoming model fits."""

    name = "lru"

    def choose(self, request: EvictionRequest) -> list[str | Victim] | None:
        return _take_until(sorted(request.residents, key=_least_recent_first), request)


class Priority:
    """Move out only residents whose priority is ≤ the incoming model's, lowest priority first.

    Equal priority counts, so peers can swap each other out; among equals the least recently
    used goes first.
    """

    name = "priority"

    def choose(self, request: EvictionRequest) -> list[str | Victim] | None:
        allowed = [r for r in request.residents if r.priority <= request.incoming_priority]
        order = sorted(allowed, key=lambda r: (r.shielded, r.priority, *_least_recent_first(r)[1:]))
        return _take_until(order, request)
