"""Warming the sleep tier: sleeping copies of the catalogue's models on every node, before traffic.

A model asleep on a node wakes there in seconds; anywhere else it is a cold load of tens of
seconds to minutes. The sleep tier leaves a copy only where a model has run, so a model's next
request often finds its only copy behind a busy resident. An operator who opens a fleet (or
brings a node back) can spend the GPUs' idle time first: each node loads models one at a time
and puts each to sleep, until its host RAM holds as many as fit, short of a reserve kept for
the sleeps of later evictions. Each node takes the catalogue from its own starting point, spread
evenly round it, so every model gets about as many copies rather than the first few models one
on every node.

It is an operator's action (``POST /admin/warm-up``): every copy is a cold load that holds the
node's devices while it runs, which a request arriving meanwhile would wait behind. Nodes with a
request in flight, or a model that is not ready or asleep, are left out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from cortex_gateway.fleet import Node
from cortex_gateway.placement import eligible
from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import CortexError

if TYPE_CHECKING:
    from cortex_gateway.placement import Placement

log = logging.getLogger(__name__)


def _quiet(node: Node) -> bool:
    """No request in flight and nothing moving: a warm-up here would keep no one waiting."""
    return not any(node.busy(m) for m in node.models) and all(
        m.state in ("ready", "sleeping") for m in node.models.values()
    )


async def warm_up(placement: Placement, nodes: list[Node], reserve_bytes: int) -> dict[str, list[str]]:
    """Fill the host RAM of each of ``nodes`` with sleeping copies, ``reserve_bytes`` short of
    its host budget; returns, per node, the models put to sleep there (in order)."""
    profiles = [p for p in placement.catalogue.models if placement.residency.can_sleep(p)]
    everyone = [node.name for node in placement.fleet]
    # Node i of n starts i/n of the way round the catalogue: every model is as near the start
    # of some node's turn as any other, so each gets about as many copies.
    starts = {name: i * len(profiles) // len(everyone) for i, name in enumerate(everyone)}
    results = await asyncio.gather(
        *(_warm_node(placement, node, _rotated(profiles, starts[node.name]), reserve_bytes) for node in nodes)
    )
    return {node.name: slept for node, slept in zip(nodes, results, strict=True)}


def _rotated(profiles: list[ModelProfile], by: int) -> list[ModelProfile]:
    if not profiles:
        return []
    shift = by % len(profiles)
    return profiles[shift:] + profiles[:shift]


async def _warm_node(
    placement: Placement, node: Node, profiles: list[ModelProfile], reserve_bytes: int
) -> list[str]:
    residency = placement.residency
    slept: list[str] = []
    for profile in profiles:
        if not node.routable or not _quiet(node):
            break
        if profile.id in node.models or not eligible(node, profile):
            continue
        footprint = placement.declared_bytes_for(profile)
        if footprint == 0 or residency.host_free_bytes(node) - footprint < reserve_bytes:
            continue
        victims = placement.room_on(node, profile)
        if victims is None or any(v.action != "sleep" for v in victims):
            continue  # only room the sleep tier can make: nothing is unloaded for a copy
        try:
            await placement.on_node(node, residency.make_room_and_place(node, victims, profile))
            await residency.sleep_on(node, profile.id, reason="warm_up")
        except CortexError as exc:
            log.info("warming %s on %s stopped: %s", profile.id, node.name, exc.message)
            break
        slept.append(profile.id)
    return slept
