"""The evictor seam: which resident models to put to sleep or unload to make room for another.

The gateway decides *when* room is needed and asks the configured evictor (``[eviction]
strategy``) *which* residents to move out of device memory, and how: asleep (weights kept in
the node's host RAM, woken in seconds) or unloaded (gone, the next request pays a cold load).
The kernel enforces the rules every evictor must keep, so a third-party evictor cannot break
them: busy models (requests in flight or queued) and models pinned to the node are never
offered as candidates, a choice that frees less device memory than needed is refused, so is
one that goes on choosing after enough was freed, and a model may be put to sleep only where
it may sleep (its profile allows it, its harness can) and the node's host RAM holds every
sleeping footprint chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import msgspec

Action = Literal["sleep", "unload"]


class Resident(msgspec.Struct, kw_only=True, frozen=True):
    """A model loaded on the node, as an evictor sees it.

    ``can_sleep`` says the sleep tier is open to it; ``shielded`` that it recently evicted the
    incoming model from this node (hysteresis: evicting it back is the last resort)."""

    id: str
    memory_bytes: int
    last_used: float | None
    priority: int
    busy: bool = False
    pinned_here: bool = False
    can_sleep: bool = False
    shielded: bool = False


class Victim(msgspec.Struct, kw_only=True, frozen=True):
    """One resident to move out, and how."""

    id: str
    action: Action = "unload"


class EvictionRequest(msgspec.Struct, kw_only=True, frozen=True):
    """Room wanted on ``node`` for ``incoming`` (with its residency ``incoming_priority``).

    ``host_free_bytes`` is the node's host RAM left for sleeping models (``None``: no figure,
    so the sleep tier is bounded only by the neuron's own refusal)."""

    node: str
    incoming: str
    incoming_priority: int
    needed_bytes: int
    residents: tuple[Resident, ...]
    host_free_bytes: int | None = 0


@runtime_checkable
class Evictor(Protocol):
    """An eviction strategy, named by ``[eviction] strategy``."""

    name: str

    def choose(self, request: EvictionRequest) -> Sequence[str | Victim] | None:
        """Residents to move out, in order, freeing at least ``needed_bytes``; ``None`` if impossible.

        A plain id means unload it. Only ``request.residents`` that are neither busy nor pinned
        here are offered.
        """
        ...


def evictable(request: EvictionRequest) -> EvictionRequest:
    """``request`` with busy and pinned residents removed (what evictors are shown)."""
    allowed = tuple(r for r in request.residents if not r.busy and not r.pinned_here)
    return msgspec.structs.replace(request, residents=allowed)


def checked_choice(evictor: Evictor, request: EvictionRequest) -> list[Victim] | None:
    """Ask ``evictor`` and enforce the rules: only offered ids, enough freed, nothing extra,
    sleep only where allowed and where host RAM holds it."""
    offered = evictable(request)
    if request.needed_bytes <= 0:
        return []
    choice = evictor.choose(offered)
    if choice is None:
        return None
    victims = [c if isinstance(c, Victim) else Victim(id=c) for c in choice]
    residents = {r.id: r for r in offered.residents}
    ids = [v.id for v in victims]
    if any(model_id not in residents for model_id in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"evictor {evictor.name!r} chose models it was not offered: {ids}")
    freed = slept = 0
    for index, victim in enumerate(victims):
        resident = residents[victim.id]
        if victim.action == "sleep":
            slept += resident.memory_bytes
            room = request.host_free_bytes
            if not resident.can_sleep or (room is not None and slept > room):
                raise ValueError(f"evictor {evictor.name!r} put {victim.id!r} to sleep where it may not")
        freed += resident.memory_bytes
        if freed >= request.needed_bytes and index != len(victims) - 1:
            raise ValueError(f"evictor {evictor.name!r} chose more than needed: {ids}")
    return victims if freed >= request.needed_bytes else None
