"""The evictor seam: which resident models to unload from a node to make room for another.

The gateway decides *when* room is needed and asks the configured evictor (``[eviction]
strategy``) *which* residents to unload. The kernel enforces the rules every evictor must keep,
so a third-party evictor cannot break them: busy models (requests in flight or queued) and
models pinned to the node are never offered as candidates, and a choice that frees less than
needed is refused.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec


class Resident(msgspec.Struct, kw_only=True, frozen=True):
    """A model loaded on the node, as an evictor sees it."""

    id: str
    memory_bytes: int
    last_used: float | None
    priority: int
    busy: bool = False
    pinned_here: bool = False


class EvictionRequest(msgspec.Struct, kw_only=True, frozen=True):
    """Room wanted on ``node`` for ``incoming`` (with its residency ``incoming_priority``)."""

    node: str
    incoming: str
    incoming_priority: int
    needed_bytes: int
    residents: tuple[Resident, ...]


@runtime_checkable
class Evictor(Protocol):
    """An eviction strategy, named by ``[eviction] strategy``."""

    name: str

    def choose(self, request: EvictionRequest) -> list[str] | None:
        """Ids to unload, in order, freeing at least ``needed_bytes``; ``None`` if impossible.

        Only ``request.residents`` that are neither busy nor pinned here are offered.
        """
        ...


def evictable(request: EvictionRequest) -> EvictionRequest:
    """``request`` with busy and pinned residents removed (what evictors are shown)."""
    allowed = tuple(r for r in request.residents if not r.busy and not r.pinned_here)
    return msgspec.structs.replace(request, residents=allowed)


def checked_choice(evictor: Evictor, request: EvictionRequest) -> list[str] | None:
    """Ask ``evictor`` and enforce the rules: only offered ids, enough freed, nothing extra."""
    offered = evictable(request)
    if request.needed_bytes <= 0:
        return []
    choice = evictor.choose(offered)
    if choice is None:
        return None
    sizes = {r.id: r.memory_bytes for r in offered.residents}
    if any(model_id not in sizes for model_id in choice) or len(set(choice)) != len(choice):
        raise ValueError(f"evictor {evictor.name!r} chose models it was not offered: {choice}")
    freed = 0
    for index, model_id in enumerate(choice):
        freed += sizes[model_id]
        if freed >= request.needed_bytes and index != len(choice) - 1:
            raise ValueError(f"evictor {evictor.name!r} chose more than needed: {choice}")
    return choice if freed >= request.needed_bytes else None
