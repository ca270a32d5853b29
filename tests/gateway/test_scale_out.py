"""Scale-out of hot models, on fake nodes, in process.

The real-process case (a hot model gets a second replica under sustained queueing and loses it
when idle) is in ``test_residency.py``. This one needs two models to turn hot in the same sweep,
which real neurons cannot be made to do on cue, so the nodes are hand-built ``Node`` records
and the neuron is a double (``BudgetNeuronDouble``) that, like a neuron with a memory budget,
refuses a load that does not fit (409 ``over_budget``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from cortex_evictors.strategies import LeastRecentlyUsed
from cortex_gateway.fleet import Fleet, Node, NodeModel
from cortex_gateway.placement import MIB, Placement
from cortex_gateway.residency import Residency
from cortex_kernel.config.schema import Catalogue, ModelProfile, ResidencySection
from tests.gateway.reply_double import ReplyDouble

MODEL_MB = 600  # two never fit one 1000 MiB node


class BudgetNeuronDouble:
    """Stands in for the aiohttp session and the neurons behind it: a load is accepted where the
    node holds nothing yet, refused 409 ``over_budget`` where it already holds a model."""

    def __init__(self, holding: dict[str, set[str]]) -> None:
        self.holding = holding
        self.loaded: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []

    @asynccontextmanager
    async def post(self, url: str, json: Any = None, **_options: Any) -> AsyncIterator[ReplyDouble]:
        node, _, route = url.removeprefix("http://").partition("/")
        assert route == "models/load", route
        model = json["profile"]["id"]
        await asyncio.sleep(0)
        if self.holding.setdefault(node, set()):
            self.refused.append((node, model))
            yield ReplyDouble(409, {"error": {"code": "over_budget", "message": "over budget"}})
            return
        self.holding[node].add(model)
        self.loaded.append((node, model))
        yield ReplyDouble(200, {"id": model, "state": "ready"})


def _node(name: str, queued: dict[str, int]) -> Node:
    """An up node with a 1000 MiB budget whose ready residents have ``queued`` requests queued."""
    made = Node(name=name, endpoint=f"http://{name}", up=True)
    made.budget_bytes = 1000 * MIB
    for model_id, count in queued.items():
        made.models[model_id] = NodeModel(id=model_id, state="ready", queued=count, last_used=1.0)
    return made


async def test_two_models_hot_in_one_sweep_scale_out_to_two_nodes_not_both_to_the_first() -> None:
    nodes = [_node("n1", {"a": 2}), _node("n2", {"b": 2}), _node("spare1", {}), _node("spare2", {})]
    double = BudgetNeuronDouble({"n1": {"a"}, "n2": {"b"}})
    profiles = [
        ModelProfile(id=m, harness="fake", vram_mb=MODEL_MB, min_devices=0, max_replicas=2)
        for m in ("a", "b")
    ]
    residency = Residency(ResidencySection(scale_out_after_s=0))
    Placement(
        Fleet(nodes),
        Catalogue(models=profiles),
        cast(Any, double),
        {},
        evictor=LeastRecentlyUsed(),
        residency=residency,
    )
    residency.scale_out()  # every replica of a and of b queues: one sweep starts both
    for _ in range(10_000):
        if not residency._scaling:
            break
        await asyncio.sleep(0.001)
    # Both planned from the same view: before the fix, both went to spare1 and one was refused.
    assert double.refused == []
    assert sorted(double.loaded) == [("spare1", "a"), ("spare2", "b")]
    assert residency.scale_outs == 2
