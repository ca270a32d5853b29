"""The models on this node and their lifecycle: absent → loading → ready ⇄ sleeping → unloading
(sleeping → waking → ready).

Loads are single-flight per model id: the first caller starts one task, every later caller
(including one that arrives while it runs) waits on that same task or returns at once. A load
of a model that sleeps wakes it, through the same single task. State changes happen only on the
event loop, so no lock is needed; harness work that blocks runs in the harness's own threads.

The neuron is the one place that sees every load on its host, whichever gateway asked, so it
is the arbiter of its ``memory_budget_mb``: a load is refused (409 ``over_budget``) unless its
size fits what loading, waking and ready models have not reserved. A sleeping model holds
host RAM, not device memory: it counts against ``host_memory_budget_mb`` only, so putting it
to sleep makes room on the devices, and waking it needs that room back (409 ``over_budget``
when another model took it). A failed load reserves nothing. An unload is refused
(409 ``model_busy``) while the model has requests in flight or queued, unless forced (the
daemon's own shutdown and engine restart force it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cortex_kernel.config.schema import AdmissionSection, Catalogue, ModelProfile
from cortex_kernel.errors import BadRequest, Conflict, CortexError, Forbidden, NotFound, Overloaded
from cortex_kernel.harness import Harness, HarnessContext, HarnessSpec, ModelDescription
from cortex_kernel.sources import locate_source, not_allowed
from cortex_neuron.admission import AdmissionGate

log = logging.getLogger(__name__)
MIB = 1024 * 1024
# How long a client refused for room (or for a busy model) is told to wait before asking again.
RETRY_AFTER_S = 5.0

State = Literal["loading", "ready", "sleeping", "waking", "unloading", "failed"]
Transition = Literal["loaded", "load_failed", "slept", "woke"]
TransitionObserver = Callable[["ModelRecord", Transition, float], None]
_UNSET = object()


@dataclass(frozen=True)
class InlineTrust:
    """What neuron.toml lets an inline profile (one sent to ``POST /models/load``) switch on."""

    allow_inline_remote_code: bool = False
    allow_inline_cache_dirs: bool = False


@dataclass
class ModelRecord:
    """One model this neuron has been asked to hold."""

    profile: ModelProfile
    harness: str
    gate: AdmissionGate
    state: State = "loading"
    error: str | None = None
    # Why the load failed, as the error to answer a waiting caller with (its status and code).
    failure: CortexError | None = None
    description: ModelDescription | None = None
    load_started: float = field(default_factory=time.time)
    load_seconds: float | None = None
    last_used: float | None = None
    # The load or wake in progress (single flight); done once the model is ready or failed.
    task: asyncio.Task[None] | None = None
    # What this model counts against the budget: its declared ``vram_mb``, else an estimate
    # while loading and the measured size once loaded. A failed model counts nothing.
    reserved_bytes: int = 0
    # One sleep or wake at a time: the state says "sleeping" only once the harness has moved the
    # weights out, so a second sleep must wait for the first rather than answer at once (a wake
    # it let through would run before the weights had left, and leave a model without them).
    transition: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Being put to sleep now: still "ready" (see ``transition``), but no new request may start,
    # since the weights are leaving the device under it.
    dozing: bool = False

    @property
    def counted_bytes(self) -> int:
        """Device memory held or promised: a failed or sleeping model holds none."""
        return 0 if self.state in ("failed", "sleeping") else self.reserved_bytes

    @property
    def host_bytes(self) -> int:
        """Host RAM held by a sleeping model's offloaded weights."""
        return self.reserved_bytes if self.state == "sleeping" else 0

    @property
    def id(self) -> str:
        return self.profile.id


class ModelRegistry:
    """Owns the harness instances and every model record of this neuron."""

    def __init__(
        self,
        *,
        specs: list[HarnessSpec],
        catalogue: Catalogue,
        admission: AdmissionSection,
        allow_models: list[str] | None,
        model_roots: list[Path],
        cache_dir: Path,
        harness_options: dict[str, dict[str, object]],
        trust: InlineTrust | None = None,
        memory_budget_bytes: int | None = None,
        host_memory_budget_bytes: int | None = None,
    ) -> None:
        names = [spec.name for spec in specs]
        duplicates = {name for name in names if names.count(name) > 1}
        if duplicates:
            raise CortexError(f"harness offered twice: {', '.join(sorted(duplicates))}; block one plugin")
        self._specs = {spec.name: spec for spec in specs}
        self._harnesses: dict[str, Harness] = {}
        self.catalogue = catalogue
        self.admission = admission
        self.allow_models = allow_models
        self.model_roots = [root.resolve() for root in model_roots]
        self.cache_dir = cache_dir
        self.harness_options = harness_options
        self.trust = trust or InlineTrust()
        self.memory_budget_bytes = memory_budget_bytes
        self.host_memory_budget_bytes = host_memory_budget_bytes
        self.records: dict[str, ModelRecord] = {}
        self.cycles = 0
        # Told of every finished load and every sleep or wake, with its duration (the metrics).
        self.on_transition: TransitionObserver | None = None

    def _notify(self, record: ModelRecord, transition: Transition, seconds: float) -> None:
        if self.on_transition is not None:
            self.on_transition(record, transition, seconds)

    # -- lookups ---------------------------------------------------------------------------

    @property
    def harness_names(self) -> list[str]:
        return sorted(self._specs)

    def __iter__(self) -> Iterator[ModelRecord]:
        return iter(list(self.records.values()))

    def spec_for(self, name: str) -> HarnessSpec:
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(self.harness_names) or "none"
            raise BadRequest(f"unknown harness {name!r} (this neuron has: {known})", code="unknown_harness")
        return spec

    def harness_for(self, name: str) -> Harness:
        """The harness called ``name``; it exists once a model of that harness was loaded."""
        harness = self._harnesses.get(name)
        if harness is None:
            raise NotFound(f"harness {name!r} has no models on this neuron", code="model_not_loaded")
        return harness

    async def _build_harness(self, name: str) -> Harness:
        """Build ``name`` on first use, in a thread: harness imports (torch, vLLM) take seconds
        and must not stall the event loop that answers ``/health``."""
        harness = self._harnesses.get(name)
        if harness is None:
            spec = self.spec_for(name)
            context = HarnessContext(
                options=dict(self.harness_options.get(name, {})),
                cache_dir=self.cache_dir,
                model_roots=tuple(self.model_roots),
            )
            built = await asyncio.to_thread(spec.factory, context)
            harness = self._harnesses.setdefault(name, built)
        return harness

    def ready(self, model_id: str) -> tuple[ModelRecord, Harness]:
        """The record and harness of a model that can serve now, or the error to answer with."""
        record = self.records.get(model_id)
        if record is None:
            if self.catalogue.get(model_id) is not None:
                raise NotFound(f"model {model_id!r} is not loaded on this neuron", code="model_not_loaded")
            raise NotFound(f"model {model_id!r} does not exist on this neuron", code="model_not_found")
        if record.state == "loading":
            raise Overloaded(f"model {model_id!r} is loading", code="model_loading", retry_after=2)
        if record.state == "sleeping" or record.dozing:
            raise Overloaded(
                f"model {model_id!r} is asleep; wake it first", code="model_sleeping", retry_after=2
            )
        if record.state == "waking":
            raise Overloaded(f"model {model_id!r} is waking", code="model_waking", retry_after=2)
        if record.state != "ready":
            raise NotFound(f"model {model_id!r} is {record.state} on this neuron", code="model_not_loaded")
        record.last_used = time.time()
        return record, self.harness_for(record.harness)

    # -- admission control of loads ---------------------------------------------------------

    def resolve_profile(self, model_id: str, inline: ModelProfile | None) -> ModelProfile:
        """Decide what to load: the catalogue's profile, or an inline one the caller sent.

        Raises 403 when the id is not allowed here, and when an inline profile reaches past
        the trust boundary (see :meth:`_check_inline`).
        """
        if self.allow_models is not None and not any(
            fnmatch.fnmatchcase(model_id, p) for p in self.allow_models
        ):
            raise Forbidden(f"model {model_id!r} may not be loaded on this neuron", code="model_not_allowed")
        known = self.catalogue.get(model_id)
        profile = inline or known
        if profile is None:
            raise NotFound(
                f"model {model_id!r} is not in this neuron's catalogue; send a profile to load it",
                code="model_not_found",
            )
        if inline is not None:
            self._check_inline(inline, known)
        return profile

    def _check_inline(self, inline: ModelProfile, known: ModelProfile | None) -> None:
        """Refuse what a profile from the network may not choose.

        An inline profile comes from whoever can reach this port (the gateway sends its own
        catalogue's profiles this way). Its source must lie inside the model roots or the
        cache, or be a hub id (resolved inside the hub cache, never the working directory).
        Running the checkpoint's own code and choosing cache directories are the operator's
        decisions: allowed only where this neuron's catalogue profile for the same id already
        says the same, or neuron.toml allows it for every inline profile.
        """
        if known is None or inline.weights_source != known.weights_source:
            locate_source(inline.weights_source, roots=(*self.model_roots, self.cache_dir))
        trusted = (
            known is not None and known.trust_remote_code and inline.weights_source == known.weights_source
        )
        if inline.trust_remote_code and not (self.trust.allow_inline_remote_code or trusted):
            raise not_allowed(
                f"an inline profile may not set trust_remote_code for {inline.id!r} on this neuron "
                "(put the model in the neuron's models.toml, or set allow_inline_remote_code)",
                param="trust_remote_code",
            )
        spec = self._specs.get(inline.harness)
        if spec is None:
            return  # load() answers 400 unknown_harness
        guarded = [(key, "allow_inline_remote_code") for key in spec.code_options]
        guarded += [(key, "allow_inline_cache_dirs") for key in spec.path_options]
        for key, switch in guarded:
            if key not in inline.options or getattr(self.trust, switch):
                continue
            if known is not None and known.options.get(key, _UNSET) == inline.options[key]:
                continue
            raise not_allowed(
                f"an inline profile may not set option {key!r} on this neuron "
                f"(put the model in the neuron's models.toml, or set {switch})",
                param=f"options.{key}",
            )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def reserved_bytes(self) -> int:
        """Device memory taken or promised on this node: loading, waking, ready and unloading models."""
        return sum(record.counted_bytes for record in self.records.values())

    @property
    def host_reserved_bytes(self) -> int:
        """Host RAM held by sleeping models."""
        return sum(record.host_bytes for record in self.records.values())

    async def load(self, profile: ModelProfile) -> ModelRecord:
        """Start loading ``profile``, join the load in progress, or wake the model if it sleeps;
        return its record at once (the load runs on as a task).

        Raises 409 ``over_budget`` when the model does not fit the memory budget.
        """
        record = self._joinable(profile.id)
        if record is not None:
            return record
        self.spec_for(profile.harness)  # an unknown harness is a 400 before any state changes
        needed = await self._size_of(profile)
        # The size may have taken a thread hop to learn: look again before deciding.
        record = self._joinable(profile.id)
        if record is not None:
            return record
        self._check_budget(profile.id, needed)
        record = ModelRecord(
            profile=profile,
            harness=profile.harness,
            gate=AdmissionGate(
                self.admission.max_in_flight,
                self.admission.max_queued,
                self.admission.max_wait_s,
                priorities=self.admission.class_priority,
                max_bypass=self.admission.max_bypass,
            ),
            reserved_bytes=needed,
        )
        self.records[profile.id] = record
        record.task = asyncio.get_running_loop().create_task(self._load(record), name=f"load {profile.id}")
        return record

    def _joinable(self, model_id: str) -> ModelRecord | None:
        """The record a new load of ``model_id`` joins (waking it if it sleeps), or ``None``
        when a new record is needed (none yet, or a failed one to replace)."""
        record = self.records.get(model_id)
        if record is None or record.state == "failed":
            return None
        if record.state == "unloading":
            raise Overloaded(f"model {model_id!r} is unloading", code="model_unloading", retry_after=2)
        if record.state == "sleeping":
            self._start_wake(record)
        return record

    async def _size_of(self, profile: ModelProfile) -> int:
        """Bytes ``profile`` will take: its declared ``vram_mb``, else the harness's estimate
        (the checkpoint's size on disk), else 0. Only asked when there is a budget to keep."""
        if profile.vram_mb is not None:
            return profile.vram_mb * MIB
        if self.memory_budget_bytes is None:
            return 0
        try:
            harness = await self._build_harness(profile.harness)
        except Exception:
            return 0  # the load reports why the harness cannot be built
        estimate = getattr(harness, "estimate_bytes", None)
        if estimate is None:
            return 0
        try:
            size: int | None = await asyncio.to_thread(estimate, profile)
        except Exception:
            log.exception("estimating the size of %s failed; counting 0", profile.id)
            return 0
        return size or 0

    def _check_budget(self, model_id: str, needed: int) -> None:
        budget = self.memory_budget_bytes
        if budget is None:
            return
        free = budget - self.reserved_bytes
        if needed <= free:
            return
        raise Conflict(
            f"model {model_id!r} needs {_mib(needed)} MiB but {_mib(max(free, 0))} MiB of this "
            f"neuron's {_mib(budget)} MiB budget are free",
            code="over_budget",
            # Room comes back when a model unloads or a load fails; a model larger than the
            # whole budget never fits, so there is nothing to come back for.
            retry_after=RETRY_AFTER_S if needed <= budget else None,
        )

    async def _load(self, record: ModelRecord) -> None:
        started = time.monotonic()
        try:
            harness = await self._build_harness(record.harness)
            record.description = await harness.load(record.profile)
        except asyncio.CancelledError:
            record.state, record.error = "failed", "load cancelled"
            self._notify(record, "load_failed", time.monotonic() - started)
            raise
        except CortexError as exc:
            record.state, record.error, record.failure = "failed", exc.message, exc
            log.warning("loading %s failed: %s", record.id, exc.message)
            self._notify(record, "load_failed", time.monotonic() - started)
            return
        except Exception as exc:
            record.state, record.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("loading %s failed", record.id)
            self._notify(record, "load_failed", time.monotonic() - started)
            return
        record.state, record.error = "ready", None
        record.load_seconds = time.monotonic() - started
        measured = record.description.memory_bytes if record.description else None
        if record.profile.vram_mb is None and measured is not None:
            record.reserved_bytes = measured  # as the gateway counts it: declared, else measured
        self.cycles += 1
        self._notify(record, "loaded", record.load_seconds)
        log.info("loaded %s with %s in %.2fs", record.id, record.harness, record.load_seconds)

    def _start_wake(self, record: ModelRecord) -> None:
        """Wake a sleeping model, or join the wake (or load) already in progress (single flight).

        Raises 409 ``over_budget`` when its weights no longer fit the device budget."""
        if record.task is not None and not record.task.done():
            return
        if record.state != "sleeping":
            return
        self._check_budget(record.id, record.reserved_bytes)
        record.state = "waking"  # counted against the devices from now on
        record.task = asyncio.get_running_loop().create_task(self._wake(record), name=f"wake {record.id}")

    async def _wake(self, record: ModelRecord) -> None:
        started = time.monotonic()
        try:
            await self.harness_for(record.harness).wake(record.id)
        except CortexError as exc:
            record.state, record.error = "sleeping", f"waking failed: {exc.message}"
            log.warning("waking %s failed: %s", record.id, exc.message)
            return
        except Exception as exc:
            record.state, record.error = "sleeping", f"waking failed: {type(exc).__name__}: {exc}"
            log.exception("waking %s failed", record.id)
            return
        if record.state == "waking":
            record.state, record.error = "ready", None
            seconds = time.monotonic() - started
            self._notify(record, "woke", seconds)
            log.info("woke %s in %.2fs", record.id, seconds)

    async def _woken(self, record: ModelRecord) -> State:
        self._start_wake(record)
        await self.wait_loaded(record)
        if record.state != "ready":
            cancelled = record.task is not None and record.task.cancelled()
            if cancelled or record.state == "unloading" or self.records.get(record.id) is not record:
                # An unload cancelled the wake or followed it at once: the model is going away,
                # as a wake sent after the unload began is told, not a server failure.
                raise Overloaded(f"model {record.id!r} is unloading", code="model_unloading", retry_after=2)
            raise CortexError(f"waking {record.id!r} failed: {record.error}", code="wake_failed")
        return record.state

    async def wait_loaded(self, record: ModelRecord) -> ModelRecord:
        """Wait for ``record``'s load or wake to finish (however it ends).

        A load an unload cancelled ends here as a failed record ("load cancelled"), not as a
        ``CancelledError`` escaping into the waiter's request (which would be an empty 500);
        the waiter's own cancellation still propagates.
        """
        if record.task is not None:
            try:
                await asyncio.shield(record.task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not record.task.cancelled() or (current is not None and current.cancelling()):
                    raise
        return record

    async def unload(self, model_id: str, *, force: bool = False) -> State | Literal["absent"]:
        """Unload ``model_id``; a load in progress is cancelled first. Idempotent.

        Raises 409 ``model_busy`` while requests are in flight or queued, unless ``force``
        (which ends them): another gateway may be routing to a model this one would evict.
        """
        record = self.records.get(model_id)
        if record is None:
            return "absent"
        if record.state == "unloading":
            return "unloading"
        if not force and (record.gate.in_flight or record.gate.queued):
            raise Conflict(
                f"model {model_id!r} has {record.gate.in_flight} requests in flight and "
                f"{record.gate.queued} queued; unload it when idle, or force it",
                code="model_busy",
                retry_after=RETRY_AFTER_S,
            )
        if record.task is not None and not record.task.done():
            record.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await record.task
            # Another unload may have waited for the same task and gone on first: look again.
            return await self.unload(model_id, force=force)
        previous = record.state
        record.state = "unloading"
        try:
            harness = self._harnesses.get(record.harness)
            if harness is not None and previous in ("ready", "sleeping", "waking", "loading", "failed"):
                await harness.unload(model_id)
        except Exception as exc:
            record.state, record.error = "failed", f"unload failed: {exc}"
            log.exception("unloading %s failed", model_id)
            raise CortexError(f"unloading {model_id!r} failed: {exc}", code="unload_failed") from exc
        del self.records[model_id]
        self.cycles += 1
        return "absent"

    async def set_sleep(self, model_id: str, asleep: bool) -> State:
        """Sleep or wake a model through its harness (a wake joins one already in progress)."""
        record = self.records.get(model_id)
        if record is None:
            raise NotFound(f"model {model_id!r} is not loaded on this neuron", code="model_not_loaded")
        harness = self.harness_for(record.harness)
        if not harness.supports_sleep:
            raise BadRequest(f"harness {record.harness!r} cannot sleep models", code="sleep_not_supported")
        async with record.transition:
            return await self._set_sleep(record, harness, asleep)

    async def _set_sleep(self, record: ModelRecord, harness: Harness, asleep: bool) -> State:
        model_id = record.id
        busy_with = record.task is not None and not record.task.done()
        if not asleep and record.state in ("sleeping", "waking"):
            return await self._woken(record)
        wanted: State = "sleeping" if asleep else "ready"
        if record.state == wanted and not busy_with:
            return wanted
        if record.state not in ("ready", "sleeping") or busy_with:
            code = f"model_{record.state}" if record.state != "sleeping" else "model_waking"
            raise Overloaded(f"model {model_id!r} is {record.state}", code=code, retry_after=2)
        if record.gate.in_flight or record.gate.queued:
            raise Overloaded(f"model {model_id!r} has requests in flight", code="model_busy", retry_after=2)
        host_budget = self.host_memory_budget_bytes
        if host_budget is not None and self.host_reserved_bytes + record.reserved_bytes > host_budget:
            free = max(host_budget - self.host_reserved_bytes, 0)
            raise Conflict(
                f"model {model_id!r} needs {_mib(record.reserved_bytes)} MiB of host RAM to sleep but "
                f"{_mib(free)} MiB of this neuron's {_mib(host_budget)} MiB host budget are free",
                code="host_over_budget",
            )
        started = time.monotonic()
        record.dozing = True
        try:
            await harness.sleep(model_id)
        finally:
            record.dozing = False
        record.state = "sleeping"
        seconds = time.monotonic() - started
        self._notify(record, "slept", seconds)
        log.info("put %s to sleep in %.2fs", model_id, seconds)
        return "sleeping"

    def engine_stats(self, record: ModelRecord) -> dict[str, float] | None:
        """The engine's own gauges for a loaded model (running, waiting, KV-cache use), when
        its harness keeps any (``engine_stats`` is optional in the harness contract)."""
        if record.state not in ("ready", "sleeping"):
            return None
        harness = self._harnesses.get(record.harness)
        read = getattr(harness, "engine_stats", None)
        if read is None:
            return None
        try:
            stats: dict[str, float] = read(record.id)
        except CortexError:
            return None
        return stats

    async def restart_engines(self) -> list[str]:
        """Unload and reload every resident model, then start counting cycles afresh.

        Repeated loads and unloads fragment device memory in some engines; a restart returns
        it. The gateway drains the node first, so nothing is in flight.
        """
        busy = [r.id for r in self if r.gate.in_flight or r.gate.queued]
        if busy:
            raise Overloaded(f"models still in use: {', '.join(busy)}", code="node_busy", retry_after=5)
        profiles = [r.profile for r in self if r.state in ("ready", "sleeping")]
        for profile in profiles:
            await self.unload(profile.id, force=True)
        records = [await self.load(profile) for profile in profiles]
        for record in records:
            await self.wait_loaded(record)
        self.cycles = 0
        return [r.id for r in records if r.state == "ready"]

    async def shutdown(self, timeout_s: float) -> None:
        """Unload everything, bounded by ``timeout_s`` in total."""
        ids = list(self.records)
        if not ids:
            return

        async def unload_quietly(model_id: str) -> None:
            try:
                await self.unload(model_id, force=True)
            except Exception:
                log.exception("unloading %s at shutdown failed", model_id)

        try:
            await asyncio.wait_for(asyncio.gather(*(unload_quietly(i) for i in ids)), timeout_s)
        except TimeoutError:
            log.error("shutdown: unloading %s did not finish within %.0fs", ", ".join(ids), timeout_s)


def profile_for(entry: str | ModelProfile, catalogue: Catalogue) -> ModelProfile:
    """A ``default_models`` entry as a profile (the loader has already checked ids exist)."""
    if isinstance(entry, ModelProfile):
        return entry
    profile = catalogue.get(entry)
    if profile is None:
        raise NotFound(f"default model {entry!r} is not in the catalogue", code="model_not_found")
    return profile


def _mib(size: int) -> str:
    """``size`` in MiB for a message: whole numbers plain, small ones to one decimal."""
    return f"{size / MIB:.1f}".removesuffix(".0")
