"""Entry point of the built-in evictors."""

from __future__ import annotations

from cortex_evictors.strategies import LeastRecentlyUsed, Priority
from cortex_kernel.eviction import Evictor
from cortex_kernel.hookspecs import hookimpl


@hookimpl(trylast=True)
def register_evictors() -> list[Evictor]:
    return [LeastRecentlyUsed(), Priority()]
