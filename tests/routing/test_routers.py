"""The router seam: the kernel's rule, the built-in routers and the hook (no daemons)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import SimpleNamespace

import msgspec
import pluggy
import pytest

from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import CortexConfig
from cortex_kernel.config.tables import ConfigTable
from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.routing import Replica, RouteChoice, Router, RoutingFacts, checked_route
from cortex_routers.affinity import Affinity, KvAware, rendezvous
from cortex_routers.least_loaded import LeastLoaded
from cortex_routers.settings import AFFINITY_TABLE, KV_AWARE_TABLE


def _facts(*replicas: Replica, key: str | None = "s1", fingerprint: str | None = None) -> RoutingFacts:
    return RoutingFacts(model="m", session_key=key, fingerprint=fingerprint, replicas=replicas)


def _idle(*names: str) -> tuple[Replica, ...]:
    return tuple(Replica(name=n) for n in names)


class Fixed:
    def __init__(self, answer: RouteChoice | Sequence[str]) -> None:
        self.name = "fixed"
        self.answer = answer

    def route(self, facts: RoutingFacts) -> RouteChoice | Sequence[str]:
        return self.answer


def test_kernel_rule_drops_names_not_offered_and_duplicates(caplog: pytest.LogCaptureFixture) -> None:
    facts = _facts(*_idle("a", "b", "c"))
    with caplog.at_level(logging.WARNING, logger="cortex_kernel.routing"):
        decision = checked_route(Fixed(["ghost", "b", "b", "a"]), facts)
    assert decision.order == ("b", "a", "c")  # c was left out: tried last, never lost
    assert decision.outcome == "refused"
    assert "ghost" in caplog.text and "fixed" in caplog.text


def test_kernel_rule_keeps_a_clean_answer_and_its_outcome() -> None:
    facts = _facts(*_idle("a", "b"))
    decision = checked_route(Fixed(RouteChoice(order=("b", "a"), outcome="mine")), facts)
    assert (decision.order, decision.outcome) == (("b", "a"), "mine")


def test_kernel_rule_survives_a_router_that_raises_or_names_nothing_offered() -> None:
    class Broken:
        name = "broken"

        def route(self, facts: RoutingFacts) -> RouteChoice | Sequence[str]:
            raise RuntimeError("boom")

    replicas = (Replica(name="a", in_flight=3), Replica(name="b", in_flight=1))
    assert checked_route(Broken(), _facts(*replicas)).order == ("b", "a")
    assert checked_route(Broken(), _facts(*replicas)).outcome == "error"
    assert checked_route(Fixed(["x", "y"]), _facts(*replicas)).order == ("b", "a")


def test_least_loaded_is_the_old_policy_polled_plus_live_ties_by_name() -> None:
    replicas = (
        Replica(name="b", in_flight=0, polled_in_flight=1),
        Replica(name="a", in_flight=1),
        Replica(name="c", polled_queued=2),
    )
    assert checked_route(LeastLoaded(), _facts(*replicas)).order == ("a", "b", "c")


def test_affinity_places_by_rendezvous_and_stays() -> None:
    router = Affinity()
    replicas = _idle("a", "b", "c")
    first = checked_route(router, _facts(*replicas, key="session-1"))
    assert first.outcome == "first_seen"
    assert first.order[0] == rendezvous("session-1", ["a", "b", "c"])[0]
    again = checked_route(router, _facts(*replicas, key="session-1"))
    assert (again.order[0], again.outcome) == (first.order[0], "affinity_hit")


def test_affinity_moves_only_over_the_load_bound_and_then_stays_on_the_new_replica() -> None:
    router = Affinity(epsilon=0.25)
    home = rendezvous("s", ["a", "b"])[0]
    other = "b" if home == "a" else "a"
    assert checked_route(router, _facts(*_idle("a", "b"), key="s")).order[0] == home
    # Within the bound: total 2 (+1) over 2 replicas, x1.25 -> 2; home at 1 may take one more.
    busy = (Replica(name=home, in_flight=1), Replica(name=other, in_flight=1))
    assert checked_route(router, _facts(*busy, key="s")).outcome == "affinity_hit"
    overloaded = (Replica(name=home, in_flight=4), Replica(name=other, in_flight=0))
    moved = checked_route(router, _facts(*overloaded, key="s"))
    assert (moved.order, moved.outcome) == ((other, home), "moved_for_load")
    # Its cache is on `other` now: it stays there once `home` is idle again.
    assert checked_route(router, _facts(*_idle("a", "b"), key="s")).order[0] == other


def test_affinity_falls_back_when_its_replica_is_gone_and_keys_by_fingerprint() -> None:
    router = Affinity()
    home = checked_route(router, _facts(*_idle("a", "b"), key=None, fingerprint="fp:1")).order[0]
    survivor = "b" if home == "a" else "a"
    gone = checked_route(router, _facts(Replica(name=survivor), key=None, fingerprint="fp:1"))
    assert (gone.order, gone.outcome) == ((survivor,), "fallback")
    assert checked_route(router, _facts(*_idle("a", "b"), key=None, fingerprint="fp:1")).order[0] == survivor
    nokey = checked_route(router, _facts(Replica(name="a", in_flight=2), Replica(name="b"), key=None))
    assert (nokey.order, nokey.outcome) == (("b", "a"), "no_key")


def test_affinity_forgets_the_least_recent_sessions_beyond_its_bound() -> None:
    router = Affinity(max_sessions=2)
    for key in ("s1", "s2", "s3"):
        checked_route(router, _facts(*_idle("a", "b"), key=key))
    assert checked_route(router, _facts(*_idle("a", "b"), key="s1")).outcome == "first_seen"
    assert checked_route(router, _facts(*_idle("a", "b"), key="s3")).outcome == "affinity_hit"


def test_kv_aware_avoids_a_full_cache_and_counts_the_engine_queue() -> None:
    router = KvAware(kv_full_ratio=0.9)
    home = rendezvous("s", ["a", "b"])[0]
    other = "b" if home == "a" else "a"
    full = (Replica(name=home, engine={"kv_cache_usage_ratio": 0.95}), Replica(name=other))
    assert checked_route(router, _facts(*full, key="s")).order[0] == other
    queued = (Replica(name=home, engine={"requests_waiting": 6.0}), Replica(name="x"), Replica(name=other))
    assert checked_route(KvAware(), _facts(*queued, key="s")).order[0] != home
    # Spare replicas: by load, then by KV-cache usage.
    spare = (
        Replica(name="p", engine={"kv_cache_usage_ratio": 0.5}),
        Replica(name="q", engine={"kv_cache_usage_ratio": 0.1}),
    )
    assert checked_route(KvAware(), _facts(*spare, key=None)).order == ("q", "p")


def test_kv_aware_without_gauges_is_affinity() -> None:
    names = [f"n{i}" for i in range(5)]
    for key in (f"s{i}" for i in range(40)):
        facts = _facts(*_idle(*names), key=key)
        assert checked_route(KvAware(), facts).order == checked_route(Affinity(), facts).order


def test_sessions_spread_evenly_by_rendezvous() -> None:
    counts: dict[str, int] = {}
    for i in range(4000):
        first = rendezvous(f"session-{i}", ["a", "b", "c", "d"])[0]
        counts[first] = counts.get(first, 0) + 1
    assert max(counts.values()) / min(counts.values()) < 1.2


def test_hook_register_routers(cortex_pm: pluggy.PluginManager) -> None:
    import cortex_routers.plugin as builtin

    class Mine:
        name = "mine"

        def route(self, facts: RoutingFacts) -> list[str]:
            return [r.name for r in facts.replicas]

    class Plugin:
        @hookimpl
        def register_routers(self) -> list[Router]:
            return [Mine()]

    cortex_pm.register(builtin, name="routers")
    cortex_pm.register(Plugin(), name="mine")
    tables = {
        "routing.affinity": {"max_sessions": 7},
        "routing.kv_aware": {"load_epsilon": 0.5, "kv_full_ratio": 0.8},
    }
    kernel = SimpleNamespace(config=LoadedConfig("cortex", CortexConfig(), None, {}, tables=tables))
    offered = [r for result in cortex_pm.hook.register_routers(kernel=kernel) for r in result]
    assert sorted(r.name for r in offered) == ["affinity", "kv_aware", "least_loaded", "mine"]
    affinity = next(r for r in offered if r.name == "affinity")
    assert (affinity.epsilon, affinity.max_sessions) == (0.25, 7)
    kv = next(r for r in offered if r.name == "kv_aware")
    assert (kv.epsilon, kv.max_sessions, kv.kv_full_ratio) == (0.5, 65536, 0.8)


def test_the_routers_plugin_is_registered_by_entry_point() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["cortex_kernel"]["routers"] == "cortex_routers.plugin"


def test_generic_routing_settings_are_checked() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"routing": {"fingerprint_bytes": 0}}, CortexConfig)


@pytest.mark.parametrize(
    ("table", "bad"),
    [
        (AFFINITY_TABLE, {"load_epsilon": -0.1}),
        (KV_AWARE_TABLE, {"kv_full_ratio": 0}),
        (KV_AWARE_TABLE, {"max_sessions": 0}),
        (AFFINITY_TABLE, {"kv_full_ratio": 0.5}),  # kv_aware's key, not affinity's
    ],
)
def test_router_settings_are_checked_in_their_own_tables(
    table: ConfigTable[msgspec.Struct], bad: dict[str, float]
) -> None:
    loaded = LoadedConfig("cortex", CortexConfig(), None, {}, tables={table.name: bad})
    with pytest.raises(ConfigError, match=rf"{table.name}\.{next(iter(bad))}"):
        loaded.table(table)


def test_affinity_counts_only_live_load_not_a_stale_poll() -> None:
    """A finished request still shows in the neuron's last poll for up to a poll interval; the
    live count is what the gateway has in flight now, so an idle session does not move."""
    router = Affinity()
    home = checked_route(router, _facts(*_idle("a", "b"), key="s")).order[0]
    other = "b" if home == "a" else "a"
    stale = (Replica(name=home, polled_in_flight=6, polled_queued=3), Replica(name=other))
    assert checked_route(router, _facts(*stale, key="s")).outcome == "affinity_hit"


def test_the_gateway_builds_live_facts_from_its_own_in_flight_count() -> None:
    from cortex_gateway.fleet import Node, NodeModel
    from cortex_gateway.routing_table import engine_gauges, replica

    node = Node(name="a", endpoint="http://x")
    node.models["m"] = NodeModel(
        id="m", state="ready", in_flight=4, queued=1, engine={"requests_waiting": 2.0}
    )
    node.in_flight["m"] = 1
    seen = replica(node, "m")
    assert (seen.in_flight, seen.polled_in_flight, seen.polled_queued) == (1, 4, 1)
    assert seen.engine == {"requests_waiting": 2.0}
    assert engine_gauges({"kv_cache_usage_ratio": 0.5, "note": "x", "flag": True}) == {
        "kv_cache_usage_ratio": 0.5
    }
