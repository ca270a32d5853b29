"""The built-in evictors choose the documented victims; the kernel's rules hold for any evictor."""

from __future__ import annotations

from collections.abc import Sequence

import pluggy
import pytest

from cortex_evictors.strategies import LeastRecentlyUsed, Priority
from cortex_kernel import hookimpl
from cortex_kernel.eviction import EvictionRequest, Evictor, Resident, Victim, checked_choice

MB = 1024 * 1024


def _request(needed_mb: int, *residents: Resident, priority: int = 100) -> EvictionRequest:
    return EvictionRequest(
        node="n", incoming="new", incoming_priority=priority, needed_bytes=needed_mb * MB, residents=residents
    )


def _ids(evictor: Evictor, request: EvictionRequest) -> list[str] | None:
    """The ids an evictor's checked choice moves out, or ``None``."""
    choice = checked_choice(evictor, request)
    return None if choice is None else [victim.id for victim in choice]


def _r(name: str, mb: int, used: float | None, priority: int = 100, **flags: bool) -> Resident:
    return Resident(id=name, memory_bytes=mb * MB, last_used=used, priority=priority, **flags)


def test_lru_evicts_least_recent_first_and_only_what_is_needed() -> None:
    request = _request(
        15, _r("old", 10, 100.0), _r("never", 10, None), _r("recent", 10, 300.0), _r("mid", 10, 200.0)
    )
    assert _ids(LeastRecentlyUsed(), request) == ["never", "old"]


def test_busy_and_pinned_models_survive() -> None:
    request = _request(
        10,
        _r("busy", 50, None, busy=True),
        _r("pinned", 50, None, pinned_here=True),
        _r("idle", 10, 500.0),
    )
    assert _ids(LeastRecentlyUsed(), request) == ["idle"]
    assert _ids(LeastRecentlyUsed(), _request(20, *request.residents)) is None


def test_priority_only_evicts_residents_at_or_below_the_incoming_priority() -> None:
    residents = (
        _r("flagship", 40, None, priority=1000),
        _r("peer", 10, 300.0),
        _r("low", 10, 900.0, priority=50),
    )
    assert _ids(Priority(), _request(10, *residents)) == ["low"]
    assert _ids(Priority(), _request(20, *residents)) == ["low", "peer"]
    assert _ids(Priority(), _request(30, *residents)) is None  # never the flagship
    assert _ids(Priority(), _request(30, *residents, priority=1000)) == ["low", "peer", "flagship"]


def test_no_room_needed_means_no_victims() -> None:
    assert _ids(LeastRecentlyUsed(), _request(0, _r("a", 10, None))) == []


def test_a_misbehaving_evictor_is_refused() -> None:
    class Greedy:
        name = "greedy"

        def choose(self, request: EvictionRequest) -> Sequence[str | Victim] | None:
            return [r.id for r in request.residents]

    class Cheat:
        name = "cheat"

        def choose(self, request: EvictionRequest) -> Sequence[str | Victim] | None:
            return ["busy"]

    residents = (_r("a", 10, None), _r("b", 10, None), _r("busy", 10, None, busy=True))
    with pytest.raises(ValueError, match="more than needed"):
        checked_choice(Greedy(), _request(5, *residents))
    with pytest.raises(ValueError, match="not offered"):
        checked_choice(Cheat(), _request(5, *residents))


def test_hook_register_evictors(cortex_pm: pluggy.PluginManager) -> None:
    import cortex_evictors.plugin as builtin

    class Mine:
        name = "mine"

        def choose(self, request: EvictionRequest) -> Sequence[str | Victim] | None:
            return None

    class Plugin:
        @hookimpl
        def register_evictors(self) -> list[Evictor]:
            return [Mine()]

    cortex_pm.register(builtin, name="evictors")
    cortex_pm.register(Plugin(), name="mine")
    names = sorted(e.name for result in cortex_pm.hook.register_evictors() for e in result)
    assert names == ["lru", "mine", "priority"]


def _host(request: EvictionRequest, host_free_mb: int | None) -> EvictionRequest:
    return EvictionRequest(
        node=request.node,
        incoming=request.incoming,
        incoming_priority=request.incoming_priority,
        needed_bytes=request.needed_bytes,
        residents=request.residents,
        host_free_bytes=None if host_free_mb is None else host_free_mb * MB,
    )


@pytest.mark.parametrize("evictor", [LeastRecentlyUsed(), Priority()])
def test_victims_sleep_while_host_ram_holds_them_and_unload_after(evictor: Evictor) -> None:
    residents = (
        _r("a", 10, 100.0, can_sleep=True),
        _r("b", 10, 200.0, can_sleep=True),
        _r("c", 10, 300.0, can_sleep=False),
    )
    room = _request(30, *residents)
    assert checked_choice(evictor, _host(room, 15)) == [
        Victim(id="a", action="sleep"),
        Victim(id="b", action="unload"),  # host RAM holds only one sleeping footprint
        Victim(id="c", action="unload"),  # its profile opts out of sleeping
    ]
    held = checked_choice(evictor, _host(room, None))
    assert held is not None
    assert [v.action for v in held] == ["sleep", "sleep", "unload"]
    no_room = checked_choice(evictor, room)
    assert no_room is not None
    assert [v.action for v in no_room] == ["unload"] * 3  # no host room at all


def test_a_sleep_where_it_may_not_sleep_is_refused() -> None:
    class Sleeper:
        name = "sleeper"

        def choose(self, request: EvictionRequest) -> Sequence[str | Victim] | None:
            return [Victim(id=r.id, action="sleep") for r in request.residents]

    with pytest.raises(ValueError, match="may not"):
        checked_choice(Sleeper(), _host(_request(5, _r("a", 10, None)), 100))  # cannot sleep
    with pytest.raises(ValueError, match="may not"):
        checked_choice(Sleeper(), _host(_request(5, _r("a", 10, None, can_sleep=True)), 5))  # no room
    assert checked_choice(Sleeper(), _host(_request(5, _r("a", 10, None, can_sleep=True)), 10)) == [
        Victim(id="a", action="sleep")
    ]


@pytest.mark.parametrize("evictor", [LeastRecentlyUsed(), Priority()])
def test_a_shielded_resident_is_the_last_choice_and_ties_go_by_least_recent_use(evictor: Evictor) -> None:
    residents = (
        _r("evictor-of-new", 10, 100.0, shielded=True),
        _r("later", 10, 300.0),
        _r("earlier", 10, 200.0),
    )
    assert _ids(evictor, _request(10, *residents)) == ["earlier"]
    assert _ids(evictor, _request(30, *residents)) == ["earlier", "later", "evictor-of-new"]
