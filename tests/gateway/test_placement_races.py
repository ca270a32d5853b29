"""Placements that race each other on the same nodes, on fake nodes, in process.

The fleet simulator (``bench/fleet_sim.py``) found these in the gateway's own bookkeeping, so
each case here pins one: two placements planned from one view of a node, a model put back to
sleep before the requests it was woken for could reach it, a model routed to while the neuron
was putting it to sleep. The nodes are hand-built ``Node`` records and the neuron is a double
(``BudgetNeuronDouble``) that keeps each node's device budget as a neuron does: it refuses a
load or wake that does not fit (409 ``over_budget``) and can hold a sleep in progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from cortex_evictors.strategies import LeastRecentlyUsed
from cortex_gateway.fleet import Fleet, Node, NodeModel
from cortex_gateway.placement import MIB, Placement
from cortex_gateway.residency import Residency
from cortex_kernel.config.schema import Catalogue, ModelProfile, ResidencySection
from cortex_kernel.errors import Overloaded
from tests.gateway.reply_double import ReplyDouble
from tests.gateway.scripted_server import eventually

MODEL_MB = 600  # two never fit one 1000 MiB node


class BudgetNeuronDouble:
    """Stands in for the aiohttp session and the neurons behind it. Each node holds the models
    ``awake`` on its device; a load or wake that would make two awake is refused 409
    ``over_budget``; a sleep waits for ``sleeps`` to be set (set from the start unless held) and
    is refused 503 ``model_busy`` when ``busy_sleeps`` names the model. Every call is recorded
    as (node, route, model, answer status)."""

    def __init__(self, awake: dict[str, set[str]]) -> None:
        self.awake = awake
        self.calls: list[tuple[str, str, str, int]] = []
        self.sleeps = asyncio.Event()
        self.sleeps.set()
        self.busy_sleeps: set[str] = set()

    @asynccontextmanager
    async def post(self, url: str, json: Any = None, **_options: Any) -> AsyncIterator[ReplyDouble]:
        node, _, route = url.removeprefix("http://").partition("/")
        body = json or {}
        model = body["profile"]["id"] if "profile" in body else body["model"]
        awake = self.awake.setdefault(node, set())
        await asyncio.sleep(0)
        reply: dict[str, Any]
        if route == "models/sleep":
            await self.sleeps.wait()
            if model in self.busy_sleeps:
                status, reply = 503, {"error": {"code": "model_busy", "message": "busy"}}
            else:
                awake.discard(model)
                status, reply = 200, {"state": "sleeping"}
        elif awake - {model}:
            status, reply = 409, {"error": {"code": "over_budget", "message": "over budget"}}
        else:
            awake.add(model)
            status, reply = 200, {"id": model, "state": "ready"}
        self.calls.append((node, "/" + route, model, status))
        yield ReplyDouble(status, reply)


def _node(name: str, models: dict[str, tuple[str, float]]) -> Node:
    """An up node with a 1000 MiB device budget and host RAM for sleepers; ``models``: id →
    (state, last used)."""
    made = Node(name=name, endpoint=f"http://{name}", up=True)
    made.budget_bytes = 1000 * MIB
    made.host_budget_bytes = 4000 * MIB
    for model_id, (state, used) in models.items():
        made.models[model_id] = NodeModel(id=model_id, state=state, last_used=used)
    return made


def _placement(nodes: list[Node], double: BudgetNeuronDouble, *models: str) -> Placement:
    profiles = [
        ModelProfile(id=m, harness="fake", vram_mb=MODEL_MB, min_devices=0, sleep=True) for m in models
    ]
    return Placement(
        Fleet(nodes),
        Catalogue(models=profiles),
        cast(Any, double),
        {},
        evictor=LeastRecentlyUsed(),
        residency=Residency(ResidencySection()),
    )


async def test_two_placements_at_once_take_two_nodes_and_the_neuron_refuses_neither() -> None:
    """Both used to plan the first node by name: the second queued behind the first's eviction,
    then put the first's victim to sleep again and had its load refused before it re-planned."""
    first = _node("n1", {"old1": ("ready", 1.0)})
    second = _node("n2", {"old2": ("ready", 2.0)})
    double = BudgetNeuronDouble({"n1": {"old1"}, "n2": {"old2"}})
    placement = _placement([first, second], double, "a", "b", "old1", "old2")

    (node_a, _), (node_b, _) = await asyncio.wait_for(
        asyncio.gather(placement.node_for_request("a"), placement.node_for_request("b")), 30
    )

    assert {node_a.name, node_b.name} == {"n1", "n2"}
    assert all(status == 200 for *_, status in double.calls), double.calls
    assert sorted(call[:3] for call in double.calls) == [
        ("n1", "/models/load", "a" if node_a is first else "b"),
        ("n1", "/models/sleep", "old1"),
        ("n2", "/models/load", "b" if node_a is first else "a"),
        ("n2", "/models/sleep", "old2"),
    ]


async def test_a_placement_queued_behind_another_on_its_node_plans_again_there() -> None:
    """With one node, the second placement finds, once the first is done, that the room it
    planned on is gone: it answers 503 ``no_capacity`` without a futile sleep or load."""
    only = _node("n1", {"old": ("ready", 1.0)})
    double = BudgetNeuronDouble({"n1": {"old"}})
    double.sleeps.clear()  # hold the first placement's eviction until both have planned
    placement = _placement([only], double, "a", "b", "old")

    first = asyncio.ensure_future(placement.node_for_request("a"))
    await eventually(lambda: placement.residency.placing(only), within_s=30)
    second = asyncio.ensure_future(placement.node_for_request("b"))
    await asyncio.sleep(0.01)
    double.sleeps.set()

    node, _ = await asyncio.wait_for(first, 30)
    assert node is only
    with pytest.raises(Overloaded) as refused:
        await asyncio.wait_for(second, 30)
    assert refused.value.code == "no_capacity"
    assert [call[:3] for call in double.calls] == [
        ("n1", "/models/sleep", "old"),
        ("n1", "/models/load", "a"),
    ]


async def test_a_model_just_woken_is_not_a_victim_before_its_requests_reach_it() -> None:
    """A placement that waited for room on the same node ran between the wake and the requests
    it was for, found the model idle and put it back to sleep; now it counts as busy a moment."""
    home = _node("home", {"woken": ("sleeping", 1.0), "other": ("sleeping", 2.0)})
    double = BudgetNeuronDouble({"home": set()})
    placement = _placement([home], double, "woken", "other")

    node, waited = await asyncio.wait_for(placement.node_for_request("woken"), 30)

    assert (node.name, waited) == ("home", True) and home.models["woken"].state == "ready"
    assert not home.busy("woken")  # no request has been sent yet
    assert placement.room_on(home, placement.catalogue.models[1]) is None  # not "sleep woken"
    assert [r.busy for r in placement.residents(home) if r.id == "woken"] == [True]


async def test_a_model_being_put_to_sleep_is_not_routed_to_and_its_memory_still_counts() -> None:
    """The neuron refuses requests while the weights move out, so the gateway shows the model
    asleep from the moment it asks; its device memory stays taken until the sleep is done."""
    home = _node("home", {"model": ("ready", 1.0)})
    double = BudgetNeuronDouble({"home": {"model"}})
    double.sleeps.clear()
    placement = _placement([home], double, "model", "other")

    sleeping = asyncio.ensure_future(placement.residency.sleep_on(home, "model"))
    await eventually(lambda: home.models["model"].state == "sleeping", within_s=30)

    assert placement.fleet.replicas("model") == []  # no request goes to it meanwhile
    assert placement.free_bytes(home) == (1000 - MODEL_MB) * MIB  # and its room is not free yet
    assert placement.plan(placement.catalogue.models[1]) == []

    double.sleeps.set()
    await asyncio.wait_for(sleeping, 30)
    assert placement.free_bytes(home) == 1000 * MIB


async def test_a_sleep_the_neuron_refuses_leaves_the_model_routable() -> None:
    """A request from another gateway reached the model first: it stays ready, and routable."""
    home = _node("home", {"model": ("ready", 1.0)})
    double = BudgetNeuronDouble({"home": {"model"}})
    double.busy_sleeps.add("model")
    placement = _placement([home], double, "model")

    with pytest.raises(Overloaded):
        await asyncio.wait_for(placement.residency.sleep_on(home, "model"), 30)

    assert home.models["model"].state == "ready" and placement.fleet.replicas("model") == [home]
    assert placement.free_bytes(home) == (1000 - MODEL_MB) * MIB


def test_among_equal_plans_the_node_whose_victims_were_used_longest_ago_goes_first() -> None:
    """Least recent use breaks ties across nodes too, not only within one (it used to be the
    node's name, so every cold load went to the first node by name)."""
    nodes = [
        _node("a", {"recent": ("ready", 30.0)}),
        _node("b", {"stale": ("ready", 10.0)}),
        _node("c", {"middle": ("ready", 20.0)}),
    ]
    placement = _placement(nodes, BudgetNeuronDouble({}), "new", "recent", "stale", "middle")

    plan = placement.plan(placement.catalogue.models[0])

    assert [(node.name, [v.id for v in victims]) for node, victims in plan] == [
        ("b", ["stale"]),
        ("c", ["middle"]),
        ("a", ["recent"]),
    ]
