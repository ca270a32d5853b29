"""Choosing the node for a request: a ready replica, a load in progress, or a cold load.

One load per model however many requests arrive together (single flight); the requests that
wait for it are bounded in number and time and then answered 503 with Retry-After.

A plan is made from a view that may be a poll old, and other gateways place on the same nodes,
so the neuron is the arbiter: it refuses a load that does not fit its memory budget
(409 ``over_budget``) and an unload of a model with requests (409 ``model_busy``). Placement
then re-reads that node and plans again, a bounded number of times. A node declared down while
a load runs there is abandoned the same way, so its waiters move to a healthy node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import aiohttp
import msgspec

from cortex_gateway.fleet import Fleet, Node, NodeModel
from cortex_gateway.residency import Residency
from cortex_gateway.room_wait import RoomWait
from cortex_gateway.routing_table import RouterTable
from cortex_kernel.config.schema import Catalogue, ModelProfile
from cortex_kernel.errors import Conflict, CortexError, NotFound, Overloaded
from cortex_kernel.events import DefragRestarted, EventBus, ModelLoaded, ModelUnloaded
from cortex_kernel.eviction import EvictionRequest, Evictor, Resident, Victim, checked_choice
from cortex_kernel.node_wire import ErrorDetail, ErrorReply, ModelEntry
from cortex_kernel.routing import RouteHints

log = logging.getLogger(__name__)
MIB = 1024 * 1024


class NodeLost(CortexError):
    """The node a placement was working on was declared down before the work finished."""

    status = 503
    type = "overloaded_error"
    code = "node_down"


# What a neuron answers when its own count disagrees with a gateway's plan (another gateway
# placed there, has requests on the victim, or unloaded what this one would wake): re-read that
# node and plan again.
REPLAN_CODES = frozenset({"over_budget", "model_busy", "model_not_loaded", "room_taken"})


def refusal(node: Node, retry_after: str | None, raw: bytes) -> Conflict:
    """A neuron's 409 refusal of a load (``over_budget``) as an error placement re-plans on.

    It never reaches a client as 409: the conflict is between gateways, not the client's.
    """
    error = _error_detail(raw)
    return Conflict(
        f"node {node.name}: {error.message or 'HTTP 409'}",
        code=error.code or "conflict",
        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


def eligible(node: Node, profile: ModelProfile) -> bool:
    """Whether ``profile`` may run on ``node`` at all (ignoring what is loaded there now)."""
    if not node.up or node.draining or (profile.pinned_on and node.name not in profile.pinned_on):
        return False
    if profile.min_devices == 0:
        return True
    floor = (profile.min_device_vram_mb or 0) * MIB
    big_enough = [d for d in node.devices() if d.memory_total_bytes >= floor]
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
        reread: Callable[[Node], Awaitable[None]] | None = None,
        defrag_after_cycles: int = 0,
        events: EventBus | None = None,
        load_timeout_s: float = 1800.0,
        max_waiters: int = 512,
        max_plans: int = 4,
        routers: RouterTable | None = None,
        residency: Residency | None = None,
    ) -> None:
        self.routers = routers
        self.evictor = evictor
        # Sleeping, waking, idle TTLs and anti-thrash (cortex_gateway.residency).
        self.residency = residency or Residency()
        self.residency.attach(self)
        # Waiting for room where a model sleeps rather than cold-loading it elsewhere.
        self.room_wait = RoomWait(self, self.residency.settings)
        self.refresh = refresh
        self.reread = reread
        self.max_plans = max_plans
        # The placement tasks working on each node now, cancelled if it is declared down.
        self._working: dict[str, set[asyncio.Task[Node]]] = {}
        self._abandoned: set[asyncio.Task[Node]] = set()
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

    async def node_for_request(
        self, model_id: str, exclude: frozenset[str] = frozenset(), hints: RouteHints | None = None
    ) -> tuple[Node, bool]:
        """A node where ``model_id`` is ready (loading it first if needed), and whether this
        request waited for a load; ``hints`` go to the model's router when there is a choice of
        ready replicas."""
        node = self._ready(model_id, exclude, hints)
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
        self.room_wait.join(model_id)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.load_timeout_s), True
        except TimeoutError:
            raise Overloaded(
                f"model {model_id!r} is still loading", code="model_loading", retry_after=10
            ) from None
        finally:
            self._waiters -= 1
            self.room_wait.leave(model_id)

    def is_ready(self, model_id: str) -> bool:
        """Whether ``model_id`` is ready on some routable node (warm alias selectors ask)."""
        return bool(self.fleet.replicas(model_id))

    def can_place(self, model_id: str) -> bool:
        """Whether some node may run ``model_id`` at all (warm alias selectors ask)."""
        profile = self.catalogue.get(model_id)
        return profile is not None and any(eligible(node, profile) for node in self.fleet)

    def ready_node(
        self, model_id: str, hints: RouteHints | None, usable: Callable[[Node], bool]
    ) -> Node | None:
        """The node :meth:`node_for_request` would pick now without waiting, if a replica is
        ready and every ready one is ``usable``; ``None`` (no router asked) otherwise, so a
        caller that would then place the request again never has it chosen twice."""
        ready = self.fleet.replicas(model_id)
        if not ready or not all(usable(node) for node in ready):
            return None
        return self._pick(model_id, ready, hints)

    def _ready(self, model_id: str, exclude: frozenset[str], hints: RouteHints | None = None) -> Node | None:
        ready = [n for n in self.fleet.replicas(model_id) if n.name not in exclude]
        return self._pick(model_id, ready, hints)

    def _pick(self, model_id: str, ready: list[Node], hints: RouteHints | None) -> Node | None:
        if self.routers is not None and ready and self.routers.asks(model_id, ready):
            return self.routers.choose(model_id, ready, hints, self.events)
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
        if node.budget_bytes is not None:  # a sleeping model holds host RAM, not the budget
            awake = (m for m, model in node.models.items() if model.state != "sleeping" or m in node.dozing)
            return node.budget_bytes - sum(self.declared_bytes(node, m) for m in awake)
        measured = node.device_free_bytes if node.device_free_bytes is not None else node.available_bytes
        if measured is None:
            return None
        return measured - sum(self.declared_bytes(node, m) for m in node.pending if m in node.models)

    def residents(self, node: Node, incoming: str = "", assume_idle: bool = False) -> tuple[Resident, ...]:
        """What holds device memory on ``node`` (a sleeping model holds none, so is not one);
        ``assume_idle``: as if every resident had finished its requests and its load or wake."""
        return tuple(
            Resident(
                id=model_id,
                memory_bytes=self.declared_bytes(node, model_id),
                last_used=node.last_used(model_id),
                priority=profile.residency_priority if (profile := self.catalogue.get(model_id)) else 100,
                busy=not assume_idle and self._busy(node, model_id, model.state),
                pinned_here=bool(profile and node.name in profile.pinned_on),
                can_sleep=self.residency.can_sleep(profile),
                shielded=self.residency.shielded(node, model_id, incoming),
            )
            for model_id, model in node.models.items()
            if model.state != "sleeping"
        )

    def _busy(self, node: Node, model_id: str, state: str) -> bool:
        """Not a victim now: requests on it, a move under way, or requests on their way to it."""
        return node.busy(model_id) or state != "ready" or self.residency.settling(node, model_id)

    # -- placement -----------------------------------------------------------------------------

    def plan(
        self, profile: ModelProfile, exclude: frozenset[str] = frozenset()
    ) -> list[tuple[Node, list[Victim]]]:
        """Where ``profile`` could load, best first: free fits (by name), then fits after eviction
        (nodes where another evicting placement is at work last, since this one would queue
        behind it and find its room gone; those that would evict the model that just evicted it
        last; then fewest victims, fewest unloads, victims used longest ago, then name). Each entry
        names the residents to put to sleep or unload first.

        Least recent use breaks ties across nodes as the evictor breaks them within one: by
        name, every cold load went to the first node, and the models asleep there were the ones
        whose wakes waited most."""
        fits: list[tuple[tuple[int, bool, int, int, int, float, str], Node, list[Victim]]] = []
        for node in self.fleet:
            if node.name in exclude or not eligible(node, profile):
                continue
            victims = self.room_on(node, profile)
            if victims is None:
                continue
            reverses = any(self.residency.shielded(node, v.id, profile.id) for v in victims)
            unloads = sum(v.action == "unload" for v in victims)
            recent = max((node.last_used(v.id) or 0.0 for v in victims), default=0.0)
            key = (min(len(victims), 1), self._queues(node, victims), reverses, len(victims), unloads, recent)
            fits.append(((*key, node.name), node, victims))
        return [(node, victims) for _, node, victims in sorted(fits, key=lambda item: item[0])]

    def _queues(self, node: Node, victims: list[Victim]) -> bool:
        """Whether a plan evicting ``victims`` on ``node`` would wait behind another placement
        evicting there now (evicting placements on a node run one at a time)."""
        return bool(victims) and self.residency.placing(node)

    def room_on(self, node: Node, profile: ModelProfile, assume_idle: bool = False) -> list[Victim] | None:
        """What to move out of ``node`` for ``profile`` to fit its devices ([] when it fits
        already), or ``None`` when the evictor finds no way (``assume_idle``: no way even were
        its residents idle)."""
        free = self.free_bytes(node)
        needed = self.declared_bytes_for(profile) - free if free is not None else 0
        if needed <= 0:
            return []
        if self.evictor is None:
            return None
        request = EvictionRequest(
            node=node.name,
            incoming=profile.id,
            incoming_priority=profile.residency_priority,
            needed_bytes=needed,
            residents=self.residents(node, profile.id, assume_idle),
            host_free_bytes=self.residency.host_free_bytes(node),
        )
        return checked_choice(self.evictor, request)

    @staticmethod
    def declared_bytes_for(profile: ModelProfile) -> int:
        return (profile.vram_mb or 0) * MIB

    async def _cold_load(self, profile: ModelProfile, exclude: frozenset[str], may_wait: bool = True) -> Node:
        # What we know may be a poll old (a node that just came up, a model that just loaded):
        # look again before deciding that nothing can serve.
        if self.refresh is not None and (not self.fleet.routable() or not self.plan(profile, exclude)):
            await self.refresh()
        refused: set[str] = set()  # nodes that refused this model at their budget
        last: CortexError | None = None
        for _ in range(self.max_plans):
            node = self._ready(profile.id, exclude)
            if node is not None:
                return node
            plans = self._plans(profile, exclude, refused)
            if may_wait and self.room_wait.worth_waiting(profile, exclude, plans):
                may_wait = False  # asleep where busy residents stand in the way: wait for room there
                cold = (lambda: self._cold_load(profile, exclude, may_wait=False)) if plans else None
                if (node := await self.room_wait.wait(profile, exclude, cold)) is not None:
                    return node
                if (node := self._ready(profile.id, exclude)) is not None:
                    return node
                plans = self._plans(profile, exclude, refused)
            replan = False
            for node, victims in plans:
                try:
                    woke = await self.on_node(
                        node, self.residency.make_room_and_place(node, victims, profile)
                    )
                    self.cold_starts += not woke
                    self.residency.awaited(node, profile.id)
                    return node
                except NodeLost as exc:
                    log.warning("placing %s on %s abandoned: %s", profile.id, node.name, exc.message)
                    last, replan = exc, True
                except CortexError as exc:
                    if exc.code not in REPLAN_CODES:
                        log.warning("placing %s on %s failed: %s", profile.id, node.name, exc.message)
                        last = exc
                        continue
                    # Another gateway placed here too, or has requests on the victim: the
                    # neuron's word wins. Read the node again and plan with what it says.
                    log.info("placing %s on %s refused: %s", profile.id, node.name, exc.message)
                    if exc.code == "over_budget":
                        refused.add(node.name)
                    if self.reread is not None:
                        await self.reread(node)
                    last, replan = exc, True
                break
            if not replan:
                break
        if last is None or isinstance(last, NodeLost) or last.code in REPLAN_CODES:
            retry_after = last.retry_after if last is not None and last.retry_after else 10
            raise Overloaded(
                f"no node can host {profile.id!r} now", code="no_capacity", retry_after=retry_after
            )
        raise last

    def _plans(
        self, profile: ModelProfile, exclude: frozenset[str], refused: set[str]
    ) -> list[tuple[Node, list[Victim]]]:
        """A load or wake already running somewhere (an operator's, another gateway's, a default
        model) is joined, and a model asleep on a node is woken there, making room for it first;
        else :meth:`plan`, less free fits on nodes that refused at their budget (the gateway's
        figure was wrong there, and only an eviction can change the neuron's)."""
        loading = [n for n in self.fleet.replicas(profile.id, ("loading", "waking")) if n.name not in exclude]
        if loading:
            return [(node, []) for node in loading]
        asleep = [
            (node, victims)
            for node in self.fleet.replicas(profile.id, ("sleeping",))
            if node.name not in exclude and (victims := self.room_on(node, profile)) is not None
        ]
        if asleep:
            return sorted(asleep, key=lambda plan: (self._queues(*plan), len(plan[1]), plan[0].name))
        return [
            (node, victims)
            for node, victims in self.plan(profile, exclude)
            if victims or node.name not in refused
        ]

    async def on_node(self, node: Node, work: Awaitable[bool]) -> bool:
        """Await ``work`` on ``node``; if the node is declared down meanwhile, raise :class:`NodeLost`.

        The work runs in this task, not a new one, so a load's reservation is in place before
        anything else can plan. :meth:`node_down` cancels the task; the cancellation is turned
        back into an error here unless the task was also cancelled for another reason.
        """
        task = asyncio.current_task()
        assert task is not None
        working = self._working.setdefault(node.name, set())
        working.add(task)
        try:
            return await work
        except asyncio.CancelledError:
            if task not in self._abandoned or task.uncancel() > 0:
                raise
            raise NodeLost(f"node {node.name} was declared down ({node.last_error})") from None
        finally:
            working.discard(task)
            self._abandoned.discard(task)

    def node_down(self, node: Node) -> None:
        """Abandon the loads and evictions in progress on ``node``, now declared down: a frozen
        neuron may never answer, and their waiters are placed again on a healthy node."""
        for task in self._working.pop(node.name, set()):
            self._abandoned.add(task)
            task.cancel()

    async def unload_on(
        self, node: Node, model_id: str, reason: Literal["requested", "evicted", "idle"] = "requested"
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
        node.own_changes += 1
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
                raw = await reply.read()
                if reply.status == 409:  # over_budget: the neuron's own count of its memory wins
                    node.models.pop(profile.id, None)
                    raise refusal(node, reply.headers.get("Retry-After"), raw)
                if reply.status >= 400:
                    error = _error_detail(raw)
                    message = error.message or f"HTTP {reply.status}"
                    node.models.pop(profile.id, None)
                    seconds = time.perf_counter() - started
                    self.events.emit(
                        ModelLoaded(
                            node=node.name, model=profile.id, seconds=seconds, ok=False, error=message
                        )
                    )
                    # A refusal of the profile itself (a source outside the node's roots, an unknown
                    # model, a bad option) keeps its status; a 401 (this gateway's token) or a node
                    # that is full or busy stays a 502 like any other failure of the node.
                    if reply.status in (400, 403, 404, 422):
                        raise CortexError(
                            f"node {node.name}: {message}",
                            status=reply.status,
                            type=error.type,
                            code=error.code or "load_failed",
                        )
                    raise CortexError(f"node {node.name}: {message}", status=502, code="load_failed")
            payload = _LOADED.decode(raw)  # a reply of the wrong shape: the node is broken
        except (aiohttp.ClientError, TimeoutError, ValueError, msgspec.DecodeError) as exc:
            node.models.pop(profile.id, None)
            seconds = time.perf_counter() - started
            self.events.emit(
                ModelLoaded(node=node.name, model=profile.id, seconds=seconds, ok=False, error=str(exc))
            )
            raise CortexError(
                f"node {node.name} unreachable while loading: {exc}", status=502, code="load_failed"
            ) from exc
        finally:
            node.pending.pop(profile.id, None)
            node.own_changes += 1
        node.cycles += 1
        seconds = time.perf_counter() - started
        self.room_wait.loaded(profile.id, seconds)
        self.events.emit(ModelLoaded(node=node.name, model=profile.id, seconds=seconds, ok=True))
        self.maybe_defrag(node)
        node.models[profile.id] = NodeModel(
            id=profile.id,
            state="ready",
            context_length=payload.context_length,
            memory_bytes=payload.memory_bytes,
        )


_LOADED = msgspec.json.Decoder(ModelEntry)
_REFUSED = msgspec.json.Decoder(ErrorReply)


def _error_detail(raw: bytes) -> ErrorDetail:
    """The detail of a neuron's error envelope, or an empty one when the body is not one."""
    try:
        return _REFUSED.decode(raw).error
    except msgspec.DecodeError:
        return ErrorDetail()
