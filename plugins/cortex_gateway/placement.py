"""Choosing the node for a request: a ready replica, a load in progress, or a cold load.

One load per model however many requests arrive together (single flight); the requests that
wait for it are bounded in number and time and then answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
import msgspec

from cortex_gateway.fleet import Fleet, Node, NodeModel
from cortex_kernel.config.schema import Catalogue, ModelProfile
from cortex_kernel.errors import CortexError, NotFound, Overloaded
from cortex_kernel.events import DefragRestarted, EventBus, ModelLoaded, ModelUnloaded
from cortex_kernel.eviction import EvictionRequest, Evictor, Resident, checked_choice

log = logging.getLogger(__name__)
MIB = 1024 * 1024


def eligible(node: Node, profile: ModelProfile) -> bool:
    """Whether ``profile`` may run on ``node`` at all (ignoring what is loaded there now)."""
    if not node.up or node.draining or (profile.pinned_on and node.name not in profile.pinned_on):
        return False
    if profile.min_devices == 0:
        return True
    floor = (profile.min_device_vram_mb or 0) * MIB
    big_enough = [d for d in node.devices() if d.get("memory_total_bytes", 0) >= floor]
    return len(big_enough) >= profile.min_devices


class Placement:
    """Finds or makes a ready replica of a model."""

    def __init__(
        self,
        fleet: Fleet,
        catalogue: Catalogue,
        session: aiohttp.ClientSession,
        headers: dict[str, str],
        *,
        evictor: Evictor | None = None,
        refresh: Callable[[], Awaitable[None]] | None = None,
        defrag_after_cycles: int = 0,
        events: EventBus | None = None,
        load_timeout_s: float = 1800.0,
        max_waiters: int = 512,
    ) -> None:
        self.evictor = evictor
        self.refresh = refresh
        self.defrag_after_cycles = defrag_after_cycles
        self.events = events or EventBus()
        self.defrag_restarts = 0
        self._defrags: dict[str, asyncio.Task[None]] = {}
        self.fleet = fleet
        self.catalogue = catalogue
        self.session = session
        self.headers = headers
        self.load_timeout_s = load_timeout_s
        self.max_waiters = max_waiters
        self._loads: dict[str, asyncio.Task[Node]] = {}
        self._waiters = 0
        self.cold_starts = 0
        self.evictions = 0

    async def node_for(self, model_id: str, exclude: frozenset[str] = frozenset()) -> Node:
        """A node where ``model_id`` is ready, loading it first if needed."""
        node, _ = await self.node_for_request(model_id, exclude)
        return node

    async def node_for_request(
        self, model_id: str, exclude: frozenset[str] = frozenset()
    ) -> tuple[Node, bool]:
        """Like :meth:`node_for`, also saying whether this request waited for a load."""
        node = self._ready(model_id, exclude)
        if node is not None:
            return node, False
        task = self._loads.get(model_id)
        if task is None:
            profile = self.catalogue.get(model_id)
            if profile is None:
                if any(model_id in n.models for n in self.fleet):
                    raise Overloaded(
                        f"model {model_id!r} is not ready yet", code="model_loading", retry_after=2
                    )
                raise NotFound(f"model {model_id!r} does not exist", code="model_not_found", param="model")
            task = asyncio.get_running_loop().create_task(
                self._cold_load(profile, exclude), name=f"place {model_id}"
            )
            self._loads[model_id] = task
            task.add_done_callback(lambda _: self._loads.pop(model_id, None))
        if self._waiters >= self.max_waiters:
            raise Overloaded(
                f"too many requests waiting for {model_id!r} to load", code="load_queue_full", retry_after=5
            )
        self._waiters += 1
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.load_timeout_s), True
        except TimeoutError:
            raise Overloaded(
                f"model {model_id!r} is still loading", code="model_loading", retry_after=10
            ) from None
        finally:
            self._waiters -= 1

    def _ready(self, model_id: str, exclude: frozenset[str]) -> Node | None:
        ready = [n for n in self.fleet.replicas(model_id) if n.name not in exclude]
        if len(ready) < 2:
            return ready[0] if ready else None
        return min(ready, key=lambda node: (node.model_load(model_id), node.name))

    # -- memory accounting -------------------------------------------------------------------

    def declared_bytes(self, node: Node, model_id: str) -> int:
        """Memory ``model_id`` takes: its profile's ``vram_mb``, else what the neuron measured.
        A failed load takes nothing (the neuron does not count it either)."""
        reported = node.models.get(model_id)
        if reported is not None and reported.state == "failed":
            return 0
        profile = self.catalogue.get(model_id)
        if profile is not None and profile.vram_mb is not None:
            return profile.vram_mb * MIB
        return (reported.memory_bytes or 0) if reported else 0

    def free_bytes(self, node: Node) -> int | None:
        """Room left for models on ``node``, or ``None`` when the node reports no figure.

        With a ``memory_budget_mb`` on the neuron, the budget minus what residents declare;
        otherwise the GPUs' (or, on CPU hosts, RAM's) free memory minus loads still starting.
        """
        if node.budget_bytes is not None:
            return node.budget_bytes - sum(self.declared_bytes(node, m) for m in node.models)
        measured = node.device_free_bytes if node.device_free_bytes is not None else node.available_bytes
        if measured is None:
            return None
        return measured - sum(self.declared_bytes(node, m) for m in node.pending if m in node.models)

    def residents(self, node: Node) -> tuple[Resident, ...]:
        return tuple(
            Resident(
                id=model_id,
                memory_bytes=self.declared_bytes(node, model_id),
                last_used=node.last_used(model_id),
                priority=profile.residency_priority if (profile := self.catalogue.get(model_id)) else 100,
                busy=node.busy(model_id) or model.state != "ready",
                pinned_here=bool(profile and node.name in profile.pinned_on),
            )
            for model_id, model in node.models.items()
        )

    # -- placement -----------------------------------------------------------------------------

    def plan(
        self, profile: ModelProfile, exclude: frozenset[str] = frozenset()
    ) -> list[tuple[Node, list[str]]]:
        """Where ``profile`` could load, best first: free fits (by name), then fits after eviction
        (fewest victims, then name). Each entry names the residents to unload first."""
        incoming = self.declared_bytes_for(profile)
        fits: list[tuple[tuple[int, int, str], Node, list[str]]] = []
        for node in self.fleet:
            if node.name in exclude or not eligible(node, profile):
                continue
            free = self.free_bytes(node)
            needed = incoming - free if free is not None else 0
            if needed <= 0:
                fits.append(((0, 0, node.name), node, []))
                continue
            if self.evictor is None:
                continue
            request = EvictionRequest(
                node=node.name,
                incoming=profile.id,
                incoming_priority=profile.residency_priority,
                needed_bytes=needed,
                residents=self.residents(node),
            )
            victims = checked_choice(self.evictor, request)
            if victims is not None:
                fits.append(((1, len(victims), node.name), node, victims))
        return [(node, victims) for _, node, victims in sorted(fits, key=lambda item: item[0])]

    @staticmethod
    def declared_bytes_for(profile: ModelProfile) -> int:
        return (profile.vram_mb or 0) * MIB

    async def _cold_load(self, profile: ModelProfile, exclude: frozenset[str]) -> Node:
        # What we know may be a poll old (a node that just came up, a model that just loaded):
        # look again before deciding that nothing can serve.
        if not self.fleet.routable() or not self.plan(profile, exclude):
            if self.refresh is not None:
                await self.refresh()
            node = self._ready(profile.id, exclude)
            if node is not None:
                return node
        # A load already running somewhere (an operator's, or a default model) is joined, and a
        # model asleep on a node is woken there (a load of a sleeping model wakes it).
        loading = [
            n for n in self.fleet.replicas(profile.id, ("loading", "sleeping")) if n.name not in exclude
        ]
        plans: list[tuple[Node, list[str]]] = [(node, []) for node in loading] or self.plan(profile, exclude)
        if not plans:
            raise Overloaded(f"no node can host {profile.id!r} now", code="no_capacity", retry_after=10)
        last: CortexError | None = None
        for node, victims in plans:
            try:
                for victim in victims:
                    await self.unload_on(node, victim, reason="evicted")
                await self.load_on(node, profile)
                self.cold_starts += 1
                return node
            except CortexError as exc:
                log.warning("placing %s on %s failed: %s", profile.id, node.name, exc.message)
                last = exc
        assert last is not None
        raise last

    async def unload_on(
        self, node: Node, model_id: str, reason: Literal["requested", "evicted"] = "requested"
    ) -> None:
        """Ask ``node`` to unload ``model_id``; the model is shown ``unloading`` meanwhile."""
        current = node.models.get(model_id)
        previous = current.state if current is not None else None
        if current is not None:
            current.state = "unloading"
        log.info("unloading %s from %s (%s)", model_id, node.name, reason)
        try:
            async with self.session.post(
                f"{node.endpoint}/models/unload", json={"model": model_id}, headers=self.headers
            ) as reply:
                if reply.status == 409:  # model_busy: requests this gateway does not see use it
                    if current is not None and previous is not None:
                        current.state = previous
                    raise Overloaded(
                        f"node {node.name} has requests in flight on {model_id!r}; try again shortly",
                        code="model_busy",
                        retry_after=5,
                    )
                if reply.status >= 400:
                    text = await reply.text()
                    raise CortexError(f"node {node.name} refused to unload {model_id!r}: {text}", status=502)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CortexError(f"node {node.name} unreachable while unloading: {exc}", status=502) from exc
        node.models.pop(model_id, None)
        node.cycles += 1
        if reason == "evicted":
            self.evictions += 1
        strategy = self.evictor.name if reason == "evicted" and self.evictor is not None else None
        self.events.emit(ModelUnloaded(node=node.name, model=model_id, reason=reason, strategy=strategy))
        self.maybe_defrag(node)

    # -- defragmentation ---------------------------------------------------------------------

    def maybe_defrag(self, node: Node) -> None:
        """After ``defrag_after_cycles`` loads and unloads, drain ``node`` and restart its engines."""
        if (
            not self.defrag_after_cycles
            or node.cycles < self.defrag_after_cycles
            or node.name in self._defrags
        ):
            return
        task = asyncio.get_running_loop().create_task(self._defrag(node), name=f"defrag {node.name}")
        self._defrags[node.name] = task
        task.add_done_callback(lambda _: self._defrags.pop(node.name, None))

    async def _defrag(self, node: Node, idle_timeout_s: float = 300.0, settle_s: float = 1.0) -> None:
        log.info(
            "node %s reached %d load/unload cycles: draining to restart its engines", node.name, node.cycles
        )
        node.draining = True
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + idle_timeout_s
            timeout = aiohttp.ClientTimeout(total=self.load_timeout_s, connect=10)
            while loop.time() < deadline:
                # Idle twice, a settle period apart: the request whose load triggered this is
                # still on its way to being counted when the task first runs.
                if any(node.busy(m) for m in node.models):
                    await asyncio.sleep(0.2)
                    continue
                await asyncio.sleep(settle_s)
                if any(node.busy(m) for m in node.models):
                    continue
                async with self.session.post(
                    f"{node.endpoint}/engines/restart", headers=self.headers, timeout=timeout
                ) as reply:
                    await reply.read()
                    if reply.status == 503:  # something slipped in; wait for it and try again
                        await asyncio.sleep(0.5)
                        continue
                    if reply.status >= 400:
                        log.warning("node %s refused to restart engines: HTTP %s", node.name, reply.status)
                        return
                node.cycles = 0
                self.defrag_restarts += 1
                self.events.emit(DefragRestarted(node=node.name))
                return
            log.warning("node %s did not go idle; defragmentation skipped", node.name)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("restarting engines on %s failed: %s", node.name, exc)
        finally:
            node.draining = False

    async def load_on(self, node: Node, profile: ModelProfile) -> None:
        """Ask ``node`` to load ``profile`` and wait until it is ready there."""
        node.models[profile.id] = node.pending[profile.id] = NodeModel(id=profile.id, state="loading")
        body = {"profile": msgspec.to_builtins(profile), "wait": True}
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=self.load_timeout_s, connect=10)
        try:
            async with self.session.post(
                f"{node.endpoint}/models/load", json=body, headers=self.headers, timeout=timeout
            ) as reply:
                payload: dict[str, Any] = await reply.json(content_type=None)
                if reply.status >= 400:
                    message = payload.get("error", {}).get("message", f"HTTP {reply.status}")
                    node.models.pop(profile.id, None)
                    seconds = time.perf_counter() - started
                    self.events.emit(ModelLoaded(node=node.name, model=profile.id, seconds=seconds, ok=False))
                    raise CortexError(f"node {node.name}: {message}", status=502, code="load_failed")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            node.models.pop(profile.id, None)
            self.events.emit(
                ModelLoaded(node=node.name, model=profile.id, seconds=time.perf_counter() - started, ok=False)
            )
            raise CortexError(
                f"node {node.name} unreachable while loading: {exc}", status=502, code="load_failed"
            ) from exc
        finally:
            node.pending.pop(profile.id, None)
        node.cycles += 1
        self.events.emit(
            ModelLoaded(node=node.name, model=profile.id, seconds=time.perf_counter() - started, ok=True)
        )
        self.maybe_defrag(node)
        node.models[profile.id] = NodeModel(
            id=profile.id,
            state="ready",
            context_length=payload.get("context_length"),
            memory_bytes=payload.get("memory_bytes"),
        )
