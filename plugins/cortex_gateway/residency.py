"""Residency: what stays on a node's devices, what sleeps in its host RAM, and what goes.

Placement decides *where* a request runs; this module carries out the moves that make room
and the ones that happen with no request at all:

- the sleep tier: an eviction victim the evictor chose to sleep is put to sleep (its weights
  kept in the node's host RAM), and a request for a sleeping model wakes it where it sleeps
  (single flight, like a load) rather than cold-loading it elsewhere;
- idle TTLs: a model idle for ``idle_ttl_s`` sleeps, and one idle for ``unload_ttl_s`` is
  unloaded (pinned models are exempt unless ``[residency] ttl_pinned``; replicas up to
  ``min_replicas`` are kept);
- anti-thrash: evicting placements are serialised per node; a model evicted from a node is
  remembered, so its evictor is shielded from evicting it back (the evictor's last choice, and
  a placement that must reverse it waits until ``hysteresis_s`` has passed since); a model
  placed back within ``thrash_window_s`` of its eviction is counted as thrash.

Everything here is soft state of one gateway, rebuilt from polls; the neuron stays the arbiter
of its memory (a sleep over its host budget is refused and the victim unloaded instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Literal

import aiohttp
import msgspec

from cortex_gateway.fleet import Node, NodeModel
from cortex_kernel.config.schema import ModelProfile, ResidencySection
from cortex_kernel.errors import Conflict, CortexError, NotFound, Overloaded
from cortex_kernel.events import ModelSlept, ModelWoken, ReplicaScaled, ThrashDetected
from cortex_kernel.eviction import Victim
from cortex_kernel.node_wire import ErrorDetail, ErrorReply

if TYPE_CHECKING:
    from cortex_gateway.placement import Placement

log = logging.getLogger(__name__)
Reason = Literal["requested", "evicted", "idle", "warm_up"]
# How long a model just loaded or woken counts as busy (see ``Residency.settling``).
SETTLE_S = 1.0


class Residency:
    """The gateway's residency decisions and the moves that carry them out."""

    def __init__(self, settings: ResidencySection | None = None) -> None:
        self.settings = settings or ResidencySection()
        self._placement: Placement | None = None
        # (node, model) → (the model whose placement evicted it, when).
        self._evicted: dict[tuple[str, str], tuple[str, float]] = {}
        # (node, model) → when this gateway first saw it resident (idle since, if never used).
        self._seen: dict[tuple[str, str], float] = {}
        # (node, model) → when a placement for waiting requests last made it ready there
        # (monotonic and wall clock).
        self._awaited: dict[tuple[str, str], tuple[float, float]] = {}
        self._node_locks: dict[str, asyncio.Lock] = {}
        self._wakes: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._ttl_task: asyncio.Task[None] | None = None
        # model → since when its replicas have queued at least ``scale_out_queued`` each.
        self._queueing_since: dict[str, float] = {}
        self._scaling: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.scale_outs = 0
        self.scale_ins = 0
        self.sleeps = 0
        self.wakes = 0
        self.thrash_events = 0
        self.idle_sleeps = 0
        self.idle_unloads = 0

    def attach(self, placement: Placement) -> None:
        self._placement = placement

    @property
    def placement(self) -> Placement:
        assert self._placement is not None, "Residency used before Placement.attach"
        return self._placement

    # -- policy ------------------------------------------------------------------------------

    def can_sleep(self, profile: ModelProfile | None) -> bool:
        """Whether the sleep tier is open to ``profile`` (its ``sleep``, else the default)."""
        if profile is None:
            return False
        return self.settings.sleep if profile.sleep is None else profile.sleep

    def idle_ttl(self, profile: ModelProfile) -> float | None:
        return profile.idle_ttl_s if profile.idle_ttl_s is not None else self.settings.idle_ttl_s

    def unload_ttl(self, profile: ModelProfile) -> float | None:
        return profile.unload_ttl_s if profile.unload_ttl_s is not None else self.settings.unload_ttl_s

    def host_free_bytes(self, node: Node) -> int:
        """Host RAM left on ``node`` for sleeping footprints: its ``host_memory_budget_mb`` less
        what sleeps there. A neuron with no host budget has no sleep tier for evictions: host
        RAM an operator did not set aside is not taken behind their back."""
        if node.host_budget_bytes is None:
            return 0
        asleep = sum(
            self.placement.declared_bytes(node, m.id) for m in node.models.values() if m.state == "sleeping"
        )
        return node.host_budget_bytes - asleep

    def settling(self, node: Node, model_id: str) -> bool:
        """``model_id`` was loaded or woken on ``node`` for waiting requests a moment ago and no
        request has been sent to it since: they are on their way, so it counts as busy (never a
        victim) until the first arrives, for at most ``SETTLE_S``.

        Without this, a placement that waited for room on the same node runs between the wake
        and those requests, finds the model idle and puts it back to sleep; the neuron then
        refuses the requests, they wake it again, and two or three models can take turns so
        on one node without serving anything."""
        placed = self._awaited.get((node.name, model_id))
        if placed is None or time.monotonic() - placed[0] >= SETTLE_S:
            return False
        # Once a request has been sent to it, its in-flight count speaks for it.
        return node.last_routed.get(model_id, 0.0) < placed[1]

    def awaited(self, node: Node, model_id: str) -> None:
        """A placement for waiting requests made ``model_id`` ready on ``node`` (see
        :meth:`settling`; an operator's load or a scale-out has no requests on their way)."""
        self._awaited[(node.name, model_id)] = (time.monotonic(), time.time())

    def placing(self, node: Node) -> bool:
        """An evicting placement is at work on ``node`` now (a plan there would queue behind it)."""
        lock = self._node_locks.get(node.name)
        return lock is not None and lock.locked()

    def shielded(self, node: Node, resident: str, incoming: str) -> bool:
        """``resident`` evicted ``incoming`` from ``node`` within the hysteresis window."""
        return self._reversal_wait(node, resident, incoming) > 0

    def _reversal_wait(self, node: Node, resident: str, incoming: str) -> float:
        record = self._evicted.get((node.name, incoming))
        if record is None or record[0] != resident or not self.settings.hysteresis_s:
            return 0.0
        return max(0.0, record[1] + self.settings.hysteresis_s - time.monotonic())

    def idle_since(self, node: Node, model_id: str) -> float:
        """Wall-clock time since which ``model_id`` has had no request on ``node``."""
        seen = self._seen.setdefault((node.name, model_id), time.time())
        used = node.last_used(model_id)
        return max(seen, used or 0.0)

    # -- moves --------------------------------------------------------------------------------

    async def make_room_and_place(self, node: Node, victims: list[Victim], profile: ModelProfile) -> bool:
        """Move ``victims`` out of ``node`` and then wake or load ``profile`` there.

        Evicting placements on one node run one at a time, so two of them never pick the same
        victims from the same view; a placement that would unload the model that evicted it
        waits for the hysteresis window first (putting it to sleep instead costs a wake, not a
        cold load, so it does not wait). Returns whether the model was woken (not loaded).
        """
        if not victims:
            return await self._place(node, profile)
        lock = self._node_locks.setdefault(node.name, asyncio.Lock())
        contended = lock.locked()
        async with lock:
            if contended:
                # Planned from a view another placement here has changed since: plan again.
                fresh = self.placement.room_on(node, profile)
                if fresh is None:
                    raise Conflict(f"node {node.name}: room taken by another placement", code="room_taken")
                victims = fresh
                if not victims:
                    return await self._place(node, profile)
            unloads = [v for v in victims if v.action == "unload"]
            wait = max((self._reversal_wait(node, v.id, profile.id) for v in unloads), default=0.0)
            if wait > 0:
                log.info("holding %s on %s for %.1fs: it was just evicted there", profile.id, node.name, wait)
                await asyncio.sleep(wait)
            for victim in victims:
                await self._move_out(node, victim, profile.id)
            return await self._place(node, profile)

    async def _move_out(self, node: Node, victim: Victim, incoming: str) -> None:
        placement = self.placement
        if victim.action == "sleep":
            try:
                await self.sleep_on(node, victim.id, reason="evicted")
            except CortexError as exc:
                if exc.code in ("model_busy", "model_loading", "model_waking"):
                    raise
                # The neuron's host RAM could not hold it (another gateway put something to
                # sleep there): make the room by unloading instead.
                log.info("sleeping %s on %s refused (%s); unloading it", victim.id, node.name, exc.message)
                await placement.unload_on(node, victim.id, reason="evicted")
        else:
            await placement.unload_on(node, victim.id, reason="evicted")
        self._evicted[(node.name, victim.id)] = (incoming, time.monotonic())

    async def _place(self, node: Node, profile: ModelProfile) -> bool:
        current = node.models.get(profile.id)
        if current is not None and current.state in ("sleeping", "waking"):
            await self.wake_on(node, profile.id)
            woke = True
        else:
            await self.placement.load_on(node, profile)
            woke = False
        self.placed(node, profile.id)
        return woke

    def placed(self, node: Node, model_id: str) -> None:
        """``model_id`` is resident on ``node`` again: count thrash if it was just evicted there."""
        self._seen[(node.name, model_id)] = time.time()
        record = self._evicted.pop((node.name, model_id), None)
        if record is None:
            return
        since = time.monotonic() - record[1]
        if since < self.settings.thrash_window_s:
            self.thrash_events += 1
            log.info("thrash: %s back on %s %.1fs after its eviction", model_id, node.name, since)
            self.placement.events.emit(
                ThrashDetected(node=node.name, model=model_id, seconds_since_eviction=since)
            )

    async def sleep_on(self, node: Node, model_id: str, reason: Reason = "requested") -> None:
        """Ask ``node`` to put ``model_id`` to sleep; the model shows ``sleeping`` afterwards."""
        placement = self.placement
        log.info("putting %s to sleep on %s (%s)", model_id, node.name, reason)
        # Shown asleep from the moment it is asked to sleep: the neuron refuses requests while
        # the weights move out, so none is routed to it meanwhile (one that arrives wakes it).
        current = node.models.get(model_id)
        was = current.state if current is not None else "ready"
        if current is not None:
            current.state = "sleeping"
        node.own_changes += 1
        node.dozing.add(model_id)
        try:
            await self._call(node, "/models/sleep", model_id, "sleep")
        except BaseException:
            current = node.models.get(model_id)  # refused: as it was (a poll may have replaced it)
            if current is not None and current.state == "sleeping":
                current.state = was
            raise
        finally:
            node.dozing.discard(model_id)
        node.own_changes += 1
        current = node.models.get(model_id)  # a poll meanwhile may have replaced the record
        if current is not None:
            current.state = "sleeping"
        self.sleeps += 1
        if reason == "evicted":
            placement.evictions += 1
        strategy = placement.evictor.name if reason == "evicted" and placement.evictor is not None else None
        placement.events.emit(ModelSlept(node=node.name, model=model_id, reason=reason, strategy=strategy))

    async def wake_on(self, node: Node, model_id: str) -> None:
        """Wake ``model_id`` where it sleeps; concurrent callers share one wake (single flight)."""
        key = (node.name, model_id)
        task = self._wakes.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._wake(node, model_id), name=f"wake {model_id}")
            self._wakes[key] = task
            task.add_done_callback(lambda _: self._wakes.pop(key, None))
        await asyncio.shield(task)

    async def _wake(self, node: Node, model_id: str) -> None:
        current = node.models.get(model_id)
        if current is not None:
            current.state = "waking"
        started = time.perf_counter()
        try:
            await self._call(node, "/models/wake", model_id, "wake")
        except BaseException:
            if current is not None and node.models.get(model_id) is current:
                current.state = "sleeping"
            self.placement.events.emit(
                ModelWoken(node=node.name, model=model_id, seconds=time.perf_counter() - started, ok=False)
            )
            raise
        finally:
            node.own_changes += 1  # woken or not, what a poll already out read may predate it
        node.models[model_id] = NodeModel(
            id=model_id,
            state="ready",
            context_length=current.context_length if current else None,
            memory_bytes=current.memory_bytes if current else None,
            last_used=current.last_used if current else None,
        )
        self.wakes += 1
        seconds = time.perf_counter() - started
        self.placement.room_wait.woken(model_id, seconds)
        log.info("woke %s on %s in %.2fs", model_id, node.name, seconds)
        self.placement.events.emit(ModelWoken(node=node.name, model=model_id, seconds=seconds, ok=True))

    async def _call(self, node: Node, path: str, model_id: str, verb: str) -> None:
        placement = self.placement
        timeout = aiohttp.ClientTimeout(total=placement.load_timeout_s, connect=10)
        try:
            async with placement.session.post(
                f"{node.endpoint}{path}", json={"model": model_id}, headers=placement.headers, timeout=timeout
            ) as reply:
                raw = await reply.read()
                if reply.status < 400:
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CortexError(f"node {node.name} unreachable while {verb}ing: {exc}", status=502) from exc
        error = _detail(raw)
        if reply.status == 409:  # over its device or host budget: placement re-reads and re-plans
            raise Conflict(f"node {node.name}: {error.message}", code=error.code or "conflict")
        if reply.status == 503:
            raise Overloaded(
                f"node {node.name}: {error.message}", code=error.code or "model_busy", retry_after=2
            )
        if reply.status == 404:  # gone behind our back (a poll-old view): forget it, placement re-plans
            node.models.pop(model_id, None)
            raise NotFound(f"node {node.name}: {error.message}", code=error.code or "model_not_loaded")
        raise CortexError(
            f"node {node.name} refused to {verb} {model_id!r}: {error.message or reply.status}",
            status=502,
            code=error.code or f"{verb}_failed",
        )

    # -- idle TTLs -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the idle-TTL and scale-out sweep (only when some model has a TTL or may have
        more than one replica)."""
        catalogue = self.placement.catalogue
        defaults = self.settings.idle_ttl_s is not None or self.settings.unload_ttl_s is not None
        models = catalogue.models
        if not defaults and not any(p.idle_ttl_s or p.unload_ttl_s or p.max_replicas > 1 for p in models):
            return
        self._ttl_task = asyncio.get_running_loop().create_task(self._sweep_forever(), name="idle ttl")

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._ttl_task is not None:
            self._ttl_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ttl_task

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ttl_check_interval_s)
            try:
                self.scale_out()
                await self.sweep()
            except Exception:  # a bug in one sweep must not stop the next
                log.exception("idle sweep failed")

    def countdowns(self, node: Node, model_id: str, now: float | None = None) -> dict[str, float | None]:
        """Seconds until ``model_id`` sleeps and unloads on ``node`` if nothing uses it."""
        profile = self.placement.catalogue.get(model_id)
        if profile is None or not self._ttl_applies(node, profile):
            return {"sleep_in_s": None, "unload_in_s": None}
        idle = (now or time.time()) - self.idle_since(node, model_id)
        state = node.models[model_id].state if model_id in node.models else None
        sleep_ttl, unload_ttl = self.idle_ttl(profile), self.unload_ttl(profile)
        return {
            "sleep_in_s": max(0.0, sleep_ttl - idle)
            if sleep_ttl is not None and state == "ready" and self.can_sleep(profile)
            else None,
            "unload_in_s": max(0.0, unload_ttl - idle) if unload_ttl is not None else None,
        }

    def _ttl_applies(self, node: Node, profile: ModelProfile) -> bool:
        return self.settings.ttl_pinned or node.name not in profile.pinned_on

    async def sweep(self) -> None:
        """One pass of the idle TTLs over the fleet."""
        placement = self.placement
        now = time.time()
        for node in list(placement.fleet):
            if not node.routable:
                continue
            for model_id, model in list(node.models.items()):
                profile = placement.catalogue.get(model_id)
                if profile is None or node.busy(model_id) or not self._ttl_applies(node, profile):
                    continue
                if model.state not in ("ready", "sleeping"):
                    continue
                idle = now - self.idle_since(node, model_id)
                unload_ttl, sleep_ttl = self.unload_ttl(profile), self.idle_ttl(profile)
                # A ready replica let go while others serve is a scale-in (read before the
                # move, which changes the model's state).
                scale_in = model.state == "ready" and len(placement.fleet.replicas(model_id)) > 1
                try:
                    if unload_ttl is not None and idle >= unload_ttl and self._beyond_min(profile, node):
                        await placement.unload_on(node, model_id, reason="idle")
                        self.idle_unloads += 1
                    elif (
                        model.state == "ready"
                        and sleep_ttl is not None
                        and idle >= sleep_ttl
                        and self._beyond_min(profile, node)
                    ):
                        room = self.host_free_bytes(node)
                        if self.can_sleep(profile) and placement.declared_bytes(node, model_id) <= room:
                            await self.sleep_on(node, model_id, reason="idle")
                            self.idle_sleeps += 1
                        elif unload_ttl is None or not self.can_sleep(profile):
                            await placement.unload_on(node, model_id, reason="idle")
                            self.idle_unloads += 1
                        else:
                            continue
                    else:
                        continue
                except CortexError as exc:  # busy after all, or the node went away: next pass
                    log.info("idle %s on %s kept: %s", model_id, node.name, exc.message)
                    continue
                if scale_in:
                    self.scale_ins += 1
                    placement.events.emit(ReplicaScaled(node=node.name, model=model_id, direction="in"))

    # -- replicas for hot models ------------------------------------------------------------

    def scale_out(self) -> None:
        """Start another replica of each model whose replicas have all queued for
        ``scale_out_after_s``, up to its ``max_replicas``, on a node that can host it without
        evicting anything in use (the evictor is offered only idle residents).

        One sweep plans every hot model from the same view, before any of its loads shows on a
        node, so a node chosen for one is not offered to the next: two would be sent to the room
        of one, and the neuron would refuse the second."""
        placement = self.placement
        now = time.monotonic()
        chosen: set[str] = set()
        for profile in placement.catalogue.models:
            if profile.max_replicas <= 1 or profile.id in self._scaling:
                continue
            replicas = placement.fleet.replicas(profile.id)
            hot = bool(replicas) and all(
                (m := n.models.get(profile.id)) is not None and m.queued >= self.settings.scale_out_queued
                for n in replicas
            )
            if not hot:
                self._queueing_since.pop(profile.id, None)
                continue
            since = self._queueing_since.setdefault(profile.id, now)
            if now - since < self.settings.scale_out_after_s or len(replicas) >= profile.max_replicas:
                continue
            holding = {n.name for n in placement.fleet if profile.id in n.models}
            plans = placement.plan(profile, frozenset(holding | chosen))
            if not plans:
                continue
            node, victims = plans[0]
            chosen.add(node.name)
            self._queueing_since.pop(profile.id, None)
            self._scaling.add(profile.id)
            task = asyncio.get_running_loop().create_task(
                self._add_replica(node, victims, profile), name=f"scale out {profile.id}"
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _add_replica(self, node: Node, victims: list[Victim], profile: ModelProfile) -> None:
        try:
            log.info("scaling %s out to %s: its replicas queue", profile.id, node.name)
            await self.make_room_and_place(node, victims, profile)
            self.scale_outs += 1
            self.placement.events.emit(ReplicaScaled(node=node.name, model=profile.id, direction="out"))
        except CortexError as exc:
            log.warning("scaling %s out to %s failed: %s", profile.id, node.name, exc.message)
        finally:
            self._scaling.discard(profile.id)

    def _beyond_min(self, profile: ModelProfile, node: Node) -> bool:
        """Whether letting ``profile`` go from ``node`` leaves at least ``min_replicas`` ready."""
        if profile.min_replicas <= 0:
            return True
        ready = [n for n in self.placement.fleet.replicas(profile.id) if n is not node]
        return len(ready) >= profile.min_replicas


_REPLY = msgspec.json.Decoder(ErrorReply)


def _detail(raw: bytes) -> ErrorDetail:
    """The detail of a neuron's error envelope, or an empty one when the body is not one."""
    try:
        return _REPLY.decode(raw).error
    except msgspec.DecodeError:
        return ErrorDetail()
