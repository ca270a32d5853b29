"""What the gateway knows about the fleet: soft state rebuilt from polling, never persisted.

Every writer runs on the event loop and writes only between awaits: the poller replaces a node's
reported state after its network reads have finished; placement records what it routed, loads
and unloads (``in_flight``, ``pending``, ``last_routed``) and the admin API sets ``draining``.
So routing never waits on a lock held across I/O.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from cortex_gateway.neuron_http import Origin
from cortex_kernel.node_wire import Device, DeviceMemory, Discovery


@dataclass
class NodeModel:
    """A model as one neuron last reported it."""

    id: str
    state: str
    in_flight: int = 0
    queued: int = 0
    context_length: int | None = None
    memory_bytes: int | None = None
    last_used: float | None = None
    engine: dict[str, float] | None = None  # the engine's own gauges (vLLM), for routers

    @property
    def load(self) -> int:
        return self.in_flight + self.queued


@dataclass
class Node:
    """One neuron: its address, whether it answers, and what it holds."""

    name: str
    endpoint: str
    up: bool = False
    failures: int = 0
    last_poll: float | None = None
    last_error: str | None = None
    discovery: Discovery | None = None
    models: dict[str, NodeModel] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    pending: dict[str, NodeModel] = field(default_factory=dict)
    last_routed: dict[str, float] = field(default_factory=dict)
    device_health: list[DeviceMemory] = field(default_factory=list)
    budget_bytes: int | None = None
    host_budget_bytes: int | None = None
    available_bytes: int | None = None
    device_free_bytes: int | None = None
    cycles: int = 0
    draining: bool = False
    # Lifecycle changes the gateway made here itself (a sleep, wake, load or unload answered):
    # a poll whose reads began before one may show the model as it was, and must not undo it.
    own_changes: int = 0
    # Models this gateway is putting to sleep here now: shown asleep (not routed to), but their
    # device memory is taken until the neuron says the weights have left.
    dozing: set[str] = field(default_factory=set)
    # Placements waiting for room here (cortex_gateway.room_wait), woken by :meth:`changed` in
    # the order they began waiting (a dict: a set's order would vary from run to run).
    room_waiters: dict[asyncio.Future[Node | None], None] = field(default_factory=dict)

    @property
    def routable(self) -> bool:
        """Up and not being drained."""
        return self.up and not self.draining

    @functools.cached_property
    def origin(self) -> Origin:
        """The endpoint parsed for the relay's HTTP client (once per node)."""
        return Origin.from_endpoint(self.endpoint)

    def devices(self) -> list[Device]:
        """The GPUs ``/discovery`` last reported (none before the first poll)."""
        return self.discovery.devices if self.discovery is not None else []

    def last_used(self, model_id: str) -> float | None:
        """The later of the neuron's record and the gateway's own last routing."""
        reported = self.models.get(model_id)
        times = [t for t in (reported.last_used if reported else None, self.last_routed.get(model_id)) if t]
        return max(times) if times else None

    def finished(self, model_id: str) -> None:
        """A request this gateway sent to ``model_id`` here has ended (it may have freed room)."""
        self.in_flight[model_id] -= 1
        if self.room_waiters:
            self.changed(finished=True)

    def changed(self, finished: bool = False) -> None:
        """What this node holds or runs may have changed: wake the placements waiting for room
        (telling them which node saw a request end: its last report still counts that request)."""
        for waiter in self.room_waiters:
            if not waiter.done():
                waiter.set_result(self if finished else None)

    def busy(self, model_id: str) -> bool:
        return self.model_load(model_id) > 0

    def model_load(self, model_id: str) -> int:
        """Requests on ``model_id`` here: the neuron's last report plus what we sent since."""
        reported = self.models.get(model_id)
        return (reported.load if reported else 0) + self.in_flight.get(model_id, 0)


class Fleet:
    """All nodes by name, in configuration order."""

    def __init__(self, nodes: list[Node], down_after: int = 3) -> None:
        self.nodes = {node.name: node for node in nodes}
        self.down_after = down_after
        self.started = time.time()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def up_nodes(self) -> list[Node]:
        return [node for node in self.nodes.values() if node.up]

    def routable(self) -> list[Node]:
        """Up and not being drained."""
        return [node for node in self.nodes.values() if node.routable]

    def replicas(self, model_id: str, states: tuple[str, ...] = ("ready",)) -> list[Node]:
        """Up nodes where ``model_id`` is in one of ``states``."""
        return [
            node
            for node in self.nodes.values()
            if node.routable and (m := node.models.get(model_id)) is not None and m.state in states
        ]
