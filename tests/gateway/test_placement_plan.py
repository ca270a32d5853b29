"""The placement plan, on fake nodes: which node a cold model goes to, and what it evicts there.

No processes and no network: ``Placement.plan`` reads only the fleet as the poller left it and
the catalogue, so each case builds that state by hand. The order is the contract: nodes where the
model fits free come first (by name), then nodes where it fits after eviction (fewest victims,
then name); nodes that are down, draining, not pinned or without big enough GPUs never appear.
"""

from __future__ import annotations

from typing import Any, cast

from cortex_evictors.strategies import LeastRecentlyUsed
from cortex_gateway.fleet import Fleet, Node, NodeModel
from cortex_gateway.placement import MIB, Placement
from cortex_kernel.config.schema import Catalogue, ModelProfile
from cortex_kernel.eviction import Victim
from cortex_kernel.node_wire import Device, Discovery


def node(
    name: str, budget_mb: int | None = 1000, models: dict[str, int] | None = None, **fields: Any
) -> Node:
    """An up node with a memory budget and ready residents (model id -> MiB, last used in order)."""
    made = Node(name=name, endpoint=f"http://{name}", **{"up": True, **fields})
    made.budget_bytes = budget_mb * MIB if budget_mb is not None else None
    for used, (model_id, size_mb) in enumerate((models or {}).items()):
        made.models[model_id] = NodeModel(
            id=model_id, state="ready", memory_bytes=size_mb * MIB, last_used=float(used + 1)
        )
    return made


def placement(nodes: list[Node], *profiles: ModelProfile, evict: bool = True) -> Placement:
    catalogue = Catalogue(models=list(profiles))
    session = cast(Any, None)  # plan() never talks to a node
    return Placement(Fleet(nodes), catalogue, session, {}, evictor=LeastRecentlyUsed() if evict else None)


def profile(model_id: str, vram_mb: int, **fields: Any) -> ModelProfile:
    return ModelProfile(id=model_id, harness="fake", vram_mb=vram_mb, **{"min_devices": 0, **fields})


def names(plan: list[tuple[Node, list[Victim]]]) -> list[tuple[str, list[str]]]:
    """Node names and the ids of their victims (all unloads here: no node has host RAM to sleep in)."""
    assert all(v.action == "unload" for _, victims in plan for v in victims)
    return [(n.name, [v.id for v in victims]) for n, victims in plan]


def test_free_fits_come_first_by_name_then_evictions_by_fewest_victims() -> None:
    incoming = profile("new", 600)
    nodes = [
        node("c", models={"x": 300}),  # 700 free: fits
        node("a", models={"x": 300}),  # fits
        node("b", models={"y": 300, "z": 300}),  # 400 free: one victim (y, least recent)
        node("d", models={"p": 200, "q": 200, "r": 300}),  # 300 free: two victims
    ]
    plan = placement(nodes, incoming).plan(incoming)
    assert names(plan) == [("a", []), ("c", []), ("b", ["y"]), ("d", ["p", "q"])]


def test_without_an_evictor_only_free_fits_are_planned() -> None:
    incoming = profile("new", 600)
    nodes = [node("a", models={"x": 500}), node("b")]
    assert names(placement(nodes, incoming, evict=False).plan(incoming)) == [("b", [])]


def test_down_draining_excluded_and_unpinned_nodes_are_never_planned() -> None:
    incoming = profile("new", 100, pinned_on=["a", "b", "c"])
    down = node("a", up=False)
    draining = node("b", draining=True)
    nodes = [down, draining, node("c"), node("d"), node("e")]
    plan = placement(nodes, incoming).plan(incoming, exclude=frozenset({"e"}))
    assert names(plan) == [("c", [])]


def test_gpu_models_need_enough_devices_big_enough() -> None:
    incoming = profile("big", 100, min_devices=2, min_device_vram_mb=40_000)
    small = Device(index=0, memory_total_bytes=24_000 * MIB)
    large = Device(index=0, memory_total_bytes=80_000 * MIB)
    one_big = node("a", discovery=Discovery(devices=[large, small]))
    two_big = node("b", discovery=Discovery(devices=[large, large]))
    never_polled = node("c")  # no discovery yet: no devices known
    plan = placement([one_big, two_big, never_polled], incoming).plan(incoming)
    assert names(plan) == [("b", [])]


def test_busy_or_pinned_residents_are_not_evicted() -> None:
    incoming = profile("new", 600)
    busy = node("a", models={"x": 500})
    busy.in_flight["x"] = 1  # a request the gateway routed since the last poll
    pinned = node("b", models={"keep": 500})
    plan = placement([busy, pinned], incoming, profile("keep", 500, pinned_on=["b"])).plan(incoming)
    assert plan == []


def test_a_node_without_a_budget_plans_by_measured_free_memory() -> None:
    incoming = profile("new", 600)
    roomy = node("a", budget_mb=None)
    roomy.device_free_bytes = 8000 * MIB
    cramped = node("b", budget_mb=None)
    cramped.device_free_bytes = 100 * MIB
    unknown = node("c", budget_mb=None)  # reports no figure: assumed to fit, the neuron decides
    plan = placement([roomy, cramped, unknown], incoming, evict=False).plan(incoming)
    assert names(plan) == [("a", []), ("c", [])]
