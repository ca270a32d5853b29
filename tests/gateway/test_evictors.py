"""The built-in evictors choose the documented victims; the kernel's rules hold for any evictor."""

from __future__ import annotations

import pytest

from cortex_evictors.strategies import LeastRecentlyUsed, Priority
from cortex_kernel import hookimpl
from cortex_kernel.eviction import EvictionRequest, Resident, checked_choice

MB = 1024 * 1024


def _request(needed_mb: int, *residents: Resident, priority: int = 100) -> EvictionRequest:
    return EvictionRequest(
        node="n", incoming="new", incoming_priority=priority, needed_bytes=needed_mb * MB, residents=residents
    )


def _r(name: str, mb: int, used: float | None, priority: int = 100, **flags: bool) -> Resident:
    return Resident(id=name, memory_bytes=mb * MB, last_used=used, priority=priority, **flags)


def test_lru_evicts_least_recent_first_and_only_what_is_needed():
    request = _request(
        15, _r("old", 10, 100.0), _r("never", 10, None), _r("recent", 10, 300.0), _r("mid", 10, 200.0)
    )
    assert checked_choice(LeastRecentlyUsed(), request) == ["never", "old"]


def test_busy_and_pinned_models_survive():
    request = _request(
        10,
        _r("busy", 50, None, busy=True),
        _r("pinned", 50, None, pinned_here=True),
        _r("idle", 10, 500.0),
    )
    assert checked_choice(LeastRecentlyUsed(), request) == ["idle"]
    assert checked_choice(LeastRecentlyUsed(), _request(20, *request.residents)) is None


def test_priority_only_evicts_residents_at_or_below_the_incoming_priority():
    residents = (
        _r("flagship", 40, None, priority=1000),
        _r("peer", 10, 300.0),
        _r("low", 10, 900.0, priority=50),
    )
    assert checked_choice(Priority(), _request(10, *residents)) == ["low"]
    assert checked_choice(Priority(), _request(20, *residents)) == ["low", "peer"]
    assert checked_choice(Priority(), _request(30, *residents)) is None  # never the flagship
    assert checked_choice(Priority(), _request(30, *residents, priority=1000)) == ["low", "peer", "flagship"]


def test_no_room_needed_means_no_victims():
    assert checked_choice(LeastRecentlyUsed(), _request(0, _r("a", 10, None))) == []


def test_a_misbehaving_evictor_is_refused():
    class Greedy:
        name = "greedy"

        def choose(self, request):
            return [r.id for r in request.residents]

    class Cheat:
        name = "cheat"

        def choose(self, request):
            return ["busy"]

    residents = (_r("a", 10, None), _r("b", 10, None), _r("busy", 10, None, busy=True))
    with pytest.raises(ValueError, match="more than needed"):
        checked_choice(Greedy(), _request(5, *residents))
    with pytest.raises(ValueError, match="not offered"):
        checked_choice(Cheat(), _request(5, *residents))


def test_hook_register_evictors(cortex_pm):
    import cortex_evictors.plugin as builtin

    class Mine:
        name = "mine"

        def choose(self, request):
            return None

    class Plugin:
        @hookimpl
        def register_evictors(self):
            return [Mine()]

    cortex_pm.register(builtin, name="evictors")
    cortex_pm.register(Plugin(), name="mine")
    names = sorted(e.name for result in cortex_pm.hook.register_evictors() for e in result)
    assert names == ["lru", "mine", "priority"]
