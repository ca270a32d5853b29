"""Polling neurons: discovery once per (re)connection, models and health every interval.

Every neuron is polled concurrently, each request with its own timeout. A node goes down after
``down_after`` consecutive failures (one slow poll must not take out the only node with a model)
and comes back up on the first success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import aiohttp
import msgspec

from cortex_gateway.fleet import Fleet, Node, NodeModel
from cortex_gateway.routing_table import engine_gauges
from cortex_kernel.events import (
    DeviceSnapshot,
    EventBus,
    FleetPolled,
    ModelSnapshot,
    NodeSnapshot,
    PollFailed,
)
from cortex_kernel.node_wire import Discovery, Health, ModelList

log = logging.getLogger(__name__)

_Reply = TypeVar("_Reply")
# Decoders are immutable and cheap to share; building one per poll would redo the type analysis.
_DISCOVERY = msgspec.json.Decoder(Discovery)
_MODELS = msgspec.json.Decoder(ModelList)
_HEALTH = msgspec.json.Decoder(Health)


class BadReply(Exception):
    """A neuron answered a control-plane read with JSON of the wrong shape or types."""


class Poller:
    """Keeps :class:`Fleet` current."""

    def __init__(
        self,
        fleet: Fleet,
        session: aiohttp.ClientSession,
        headers: dict[str, str],
        interval_s: float = 2.0,
        timeout_s: float = 5.0,
        events: EventBus | None = None,
    ) -> None:
        self.events = events or EventBus()
        self.fleet = fleet
        self.session = session
        self.headers = headers
        self.interval_s = interval_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._task: asyncio.Task[None] | None = None
        # Called with each node after a poll: the neuron's own cycle count is the truth, and a
        # poll can land between a load and an unload the gateway counted itself.
        self.after_poll: Callable[[Node], None] | None = None
        # Called once when a node is declared down, so what waits on it is let go at once.
        self.on_down: Callable[[Node], None] | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self._last_refresh = 0.0
        self.min_refresh_s = 0.25

    async def _get(self, node: Node, path: str, decoder: msgspec.json.Decoder[_Reply]) -> _Reply:
        """One control-plane read, decoded strictly: a reply of the wrong shape is a failed poll."""
        async with self.session.get(
            f"{node.endpoint}{path}", headers=self.headers, timeout=self.timeout
        ) as reply:
            reply.raise_for_status()
            raw = await reply.read()
        try:
            return decoder.decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise BadReply(f"{path}: {exc}") from None

    async def poll_node(self, node: Node) -> None:
        """One poll of one node; updates its state only after all reads are done.

        If the gateway itself slept, woke, loaded or unloaded a model on the node while the reads
        were out, what they show may predate that change (a model shown ready that the gateway
        has just put to sleep would be routed to, and refused): the node is known to answer, and
        its models and memory are left as the gateway has them until the next poll.
        """
        changes = node.own_changes
        try:
            discovery = (
                node.discovery
                if node.up and node.discovery is not None
                else await self._get(node, "/discovery", _DISCOVERY)
            )
            models, health = await asyncio.gather(
                self._get(node, "/models", _MODELS), self._get(node, "/health", _HEALTH)
            )
        except (aiohttp.ClientError, TimeoutError, ValueError, BadReply) as exc:
            node.failures += 1
            node.last_error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, BadReply):  # not a blip: that neuron speaks another protocol
                log.warning("node %s answered a poll with a malformed reply: %s", node.name, exc)
            self.events.emit(PollFailed(node=node.name, error=type(exc).__name__, reason=str(exc)))
            if node.up and node.failures >= self.fleet.down_after:
                log.warning("node %s is down: %s", node.name, node.last_error)
                node.up = False
                node.discovery = None
                if self.on_down is not None:  # a frozen node never answers: let go of it now
                    self.on_down(node)
                # Its last report's in-flight and queued counts died with it; keeping them would
                # show phantom requests (and keep its models looking busy) until it returns.
                for model in node.models.values():
                    model.in_flight = model.queued = 0
            return
        if node.own_changes != changes:
            log.debug("poll of %s overtaken by the gateway's own change; its models kept", node.name)
            self._answered(node, discovery)
            return
        live = health.models
        node.models = {}
        for entry in models.data:
            counts = live.get(entry.id)  # /health's live counts win over the /models entry's
            node.models[entry.id] = NodeModel(
                id=entry.id,
                # Still "ready" on the neuron while the gateway puts it to sleep, but refused there.
                state="sleeping" if entry.id in node.dozing and entry.state == "ready" else entry.state,
                in_flight=counts.in_flight if counts else entry.in_flight,
                queued=counts.queued if counts else entry.queued,
                context_length=entry.context_length,
                memory_bytes=entry.memory_bytes,
                last_used=entry.last_used,
                engine=engine_gauges(counts.engine) if counts else None,
            )
        # Loads and unloads the gateway started but the neuron does not show yet stay visible.
        for model_id, pending in node.pending.items():
            node.models.setdefault(model_id, pending)
        node.budget_bytes = health.memory.budget_bytes
        node.host_budget_bytes = health.memory.host_budget_bytes
        node.available_bytes = health.memory.available_bytes
        devices = health.devices
        node.device_health = devices
        node.device_free_bytes = sum(d.memory_free_bytes or 0 for d in devices) if devices else None
        node.cycles = health.lifecycle_cycles
        self._answered(node, discovery)
        node.changed()

    @staticmethod
    def _answered(node: Node, discovery: Discovery) -> None:
        if not node.up:
            log.info("node %s is up", node.name)
        node.discovery = discovery
        node.up, node.failures, node.last_error = True, 0, None
        node.last_poll = time.time()

    async def poll_once(self) -> None:
        await asyncio.gather(*(self.poll_node(node) for node in self.fleet))
        if self.after_poll is not None:
            for node in self.fleet.up_nodes():
                self.after_poll(node)
        self.events.emit(FleetPolled(nodes=tuple(snapshot(node) for node in self.fleet)))

    async def refresh(self) -> None:
        """Poll now, on behalf of a request that found nothing to route to; concurrent callers
        share one poll, and polls closer together than ``min_refresh_s`` are not repeated."""
        if self._refreshing is None or self._refreshing.done():
            if time.monotonic() - self._last_refresh < self.min_refresh_s:
                return
            self._last_refresh = time.monotonic()
            self._refreshing = asyncio.ensure_future(self.poll_once())
        await asyncio.shield(self._refreshing)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except Exception:  # a bug in one poll must not stop polling
                log.exception("poll failed")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def snapshot(node: Node) -> NodeSnapshot:
    """What a metrics sink needs of a node, decoupled from the gateway's own objects."""
    return NodeSnapshot(
        node=node.name,
        up=node.up,
        draining=node.draining,
        last_poll=node.last_poll,
        last_error=node.last_error,
        devices=tuple(
            DeviceSnapshot(
                index=d.index,
                memory_used_bytes=d.memory_used_bytes,
                memory_free_bytes=d.memory_free_bytes,
                utilization_pct=d.utilization_pct,
            )
            for d in node.device_health
        ),
        models=tuple(
            ModelSnapshot(
                model=m.id,
                state=m.state,
                in_flight=node.model_load(m.id),
                queued=m.queued,
                last_used=node.last_used(m.id),
            )
            for m in node.models.values()
        ),
    )
