"""Waiting for room where a model sleeps, on fake nodes, in process.

The nodes are hand-built ``Node`` records and the neuron is a double (``NeuronDouble``) that
answers the lifecycle routes placement calls (load, wake, sleep) and records them, so each case
can show *where* the model was made ready and *how* (a wake there, or a cold load elsewhere). A
resident is busy while the gateway counts a request on it; ``Node.finished`` ends that request,
as the proxy does when a reply closes.
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


class NeuronDouble:
    """Stands in for the aiohttp session and every neuron behind it: records each lifecycle call
    as (node, route, model) and answers it as a neuron with room would."""

    def __init__(self, refuse_wakes: bool = False) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.refuse_wakes = refuse_wakes

    @asynccontextmanager
    async def post(self, url: str, json: Any = None, **_options: Any) -> AsyncIterator[ReplyDouble]:
        node, _, route = url.removeprefix("http://").partition("/")
        body = json or {}
        model = body["profile"]["id"] if "profile" in body else body["model"]
        self.calls.append((node, "/" + route, model))
        await asyncio.sleep(0)
        if route == "models/wake" and self.refuse_wakes:  # another gateway took the room
            yield ReplyDouble(409, {"error": {"code": "over_budget", "message": "over budget"}})
        elif route == "models/load":
            yield ReplyDouble(200, {"id": model, "state": "ready"})
        else:
            yield ReplyDouble(200, {"state": "sleeping" if route == "models/sleep" else "ready"})


def _node(name: str, models: dict[str, str]) -> Node:
    """An up node with a 1000 MiB device budget and host RAM for sleepers; ``models``: id → state."""
    made = Node(name=name, endpoint=f"http://{name}", up=True)
    made.budget_bytes = 1000 * MIB
    made.host_budget_bytes = 4000 * MIB
    for model_id, state in models.items():
        made.models[model_id] = NodeModel(id=model_id, state=state, last_used=1.0)
    return made


def _placement(nodes: list[Node], double: NeuronDouble, **residency: Any) -> Placement:
    """Two 600 MiB models on 1000 MiB nodes: ``sleepy`` and ``busy`` never fit one node together."""
    profiles = [
        ModelProfile(id=m, harness="fake", vram_mb=600, min_devices=0, sleep=True) for m in ("sleepy", "busy")
    ]
    return Placement(
        Fleet(nodes),
        Catalogue(models=profiles),
        cast(Any, double),
        {},
        evictor=LeastRecentlyUsed(),
        residency=Residency(ResidencySection(**residency)),
    )


async def _until(condition: Any, what: str) -> None:
    """Let the event loop run until ``condition()`` holds (generous: a fault, not a speed test)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def test_a_model_asleep_behind_a_busy_resident_is_woken_there_when_it_finishes() -> None:
    home = _node("home", {"sleepy": "sleeping", "busy": "ready"})
    spare = _node("spare", {})  # room for a cold load right now
    home.in_flight["busy"] = 1
    double = NeuronDouble()
    placement = _placement([home, spare], double)

    request = asyncio.ensure_future(placement.node_for_request("sleepy"))
    await _until(lambda: home.room_waiters, "placement waiting for room on home")
    assert not request.done() and double.calls == []  # waiting, not cold-loading on spare

    home.finished("busy")  # the resident's request ends: room can be made by sleeping it
    node, waited = await asyncio.wait_for(request, 30)

    assert (node.name, waited) == ("home", True)
    assert double.calls == [("home", "/models/sleep", "busy"), ("home", "/models/wake", "sleepy")]
    assert home.models["sleepy"].state == "ready" and home.models["busy"].state == "sleeping"
    assert placement.cold_starts == 0 and placement.room_wait.waits_won == 1
    assert not home.room_waiters


async def test_with_no_other_node_the_wait_is_bounded_and_ends_in_a_503_with_retry_after() -> None:
    home = _node("home", {"sleepy": "sleeping", "busy": "ready"})
    home.in_flight["busy"] = 1  # and it never finishes
    double = NeuronDouble()
    placement = _placement([home], double, wake_wait_s=0.2)

    with pytest.raises(Overloaded) as refused:
        await asyncio.wait_for(placement.node_for_request("sleepy"), 30)

    assert refused.value.code == "no_capacity" and refused.value.retry_after
    assert placement.room_wait.waits_lost == 1
    assert double.calls == [] and not home.room_waiters and not placement._loads


async def test_past_the_hedge_a_cold_load_elsewhere_serves_the_request() -> None:
    home = _node("home", {"sleepy": "sleeping", "busy": "ready"})
    spare = _node("spare", {})
    home.in_flight["busy"] = 1  # and it never finishes
    double = NeuronDouble()
    placement = _placement([home, spare], double, wake_hedge_s=0.2)

    node, waited = await asyncio.wait_for(placement.node_for_request("sleepy"), 30)

    assert (node.name, waited) == ("spare", True)
    assert double.calls == [("spare", "/models/load", "sleepy")]
    assert placement.cold_starts == 1 and placement.room_wait.waits_lost == 1
    assert not home.room_waiters and home.models["busy"].state == "ready"


async def test_a_client_that_goes_away_while_it_waits_for_room_frees_everything() -> None:
    home = _node("home", {"sleepy": "sleeping", "busy": "ready"})
    spare = _node("spare", {})
    home.in_flight["busy"] = 1
    double = NeuronDouble()
    placement = _placement([home, spare], double)

    request = asyncio.ensure_future(placement.node_for_request("sleepy"))
    await _until(lambda: home.room_waiters, "placement waiting for room on home")
    request.cancel()  # the client disconnected
    await _until(lambda: not placement._loads, "the placement task to end")

    assert not home.room_waiters and double.calls == []
    home.finished("busy")  # room now, but nobody wants the model: nothing moves
    await asyncio.sleep(0.05)
    assert double.calls == [] and home.models["sleepy"].state == "sleeping"


async def test_a_wake_the_neuron_refuses_after_the_wait_is_a_503_not_its_409() -> None:
    home = _node("home", {"sleepy": "sleeping", "busy": "ready"})
    home.in_flight["busy"] = 1
    double = NeuronDouble(refuse_wakes=True)
    placement = _placement([home], double, wake_wait_s=0.5)

    request = asyncio.ensure_future(placement.node_for_request("sleepy"))
    await _until(lambda: home.room_waiters, "placement waiting for room on home")
    home.finished("busy")

    with pytest.raises(Overloaded) as refused:
        await asyncio.wait_for(request, 30)
    assert refused.value.status == 503 and refused.value.code == "no_capacity"
    wakes = [call for call in double.calls if call[1] == "/models/wake"]
    assert wakes and len(wakes) <= placement.max_plans + 2  # one after the wait, then bounded re-plans
    assert not home.room_waiters


async def test_a_cancel_landing_as_the_node_changes_is_not_swallowed() -> None:
    """On Python 3.11 ``asyncio.wait_for`` returns a result that arrives in the step it is
    cancelled: a placement whose requests had all left would go on waiting for room (and then
    make it, for nobody). The wait for a node's change must raise ``CancelledError`` instead."""
    home = _node("home", {"sleepy": "sleeping", "busy": "ready"})
    placement = _placement([home], NeuronDouble())
    waiting = asyncio.ensure_future(placement.room_wait._changed([home], 30.0))
    await _until(lambda: home.room_waiters, "waiting for home to change")

    home.changed()  # resolves the wait's signal...
    waiting.cancel()  # ...in the same loop step as the cancellation
    outcome = (await asyncio.gather(waiting, return_exceptions=True))[0]

    assert isinstance(outcome, asyncio.CancelledError), f"the cancellation was swallowed: {outcome!r}"
    assert not home.room_waiters
