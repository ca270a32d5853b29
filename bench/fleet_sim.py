"""Fleet simulator: the gateway's real placement, evictors, residency and poller against simulated
neurons, replaying a multi-model trace on 4, 16 and 100 nodes.

What is real: ``cortex_gateway.placement.Placement`` (ready replica, single flight, plans),
``cortex_gateway.residency.Residency`` (sleep tier, idle TTLs, hysteresis), the ``lru`` and
``priority`` evictors with the kernel's checks, and ``cortex_gateway.poller.Poller`` decoding
each neuron's ``/models`` and ``/health``. What is simulated: the neurons (an in-process stand-in
for the aiohttp session answering the same routes with the same JSON) and time (every duration
runs on a virtual clock: an event loop whose ``time()`` jumps to the next timer whenever nothing is
ready, so every simulated duration is exact, the outcome does not depend on CPU load, and a run
is repeatable for a seed). The gateway modules' clocks (hysteresis, idle TTLs, last use, load
and wake durations) read the same virtual clock; the decision times and poll costs printed are
real ``time.perf_counter`` measurements of the gateway's own work.

Durations (stated assumptions, from published vLLM figures). The vLLM project's post "Zero-Reload
Model Switching with vLLM Sleep Mode" (https://blog.vllm.ai/2025/10/26/sleep-mode.html, 2025-10-26)
reports reloading a model on demand at 30-100+ s per switch, and sleep-level-1 wakes (weights
back from host RAM) 18-200x faster than a full reload, in 0.1-6 s across 0.6B-235B models. We
take, per model size (linear in weights between the ends of those ranges):

    size         footprint (weights + 6 GB KV cache)  cold load  wake (L1)  sleep (L1)  unload
    8B  bf16     22 GB                                30 s       1.0 s      1.0 s       2 s
    14B bf16     34 GB                                40 s       1.5 s      1.5 s       2 s
    32B fp8      38 GB                                60 s       3.0 s      3.0 s       3 s
    70B awq      46 GB                                100 s      6.0 s      6.0 s       4 s

The simulated neuron keeps the real one's rules where they decide who waits: a load or wake of a
model already loading or waking joins it, and a model already there is joined before its budget
is checked; a sleep of a sleeping model answers at once; one sleep or wake of a model at a time;
a move goes on if the caller leaves; and a request for a model that is not ready (asleep, being
put to sleep, unloading, gone) is refused. A refused request is placed again once the move is
done (the ``moved`` column; the real gateway relays the neuron's 503 and SDK clients retry it).
Before 2026-12-07 the stand-in let a request run on a model being put to sleep or unloaded, so
two models could hold one GPU at once; docs/performance.md has the figures from before and after.

Trace: Zipf(s=1.1) popularity over ``--models`` models (sizes drawn 50% 8B, 25% 14B, 15% 32B,
10% 70B), Poisson arrivals whose rate follows a diurnal sine (±60%), bursts (a random model gets
20x its rate for 60 s every ~10 min) and popularity drift (the ranking rotates every 20 min).
Each node: one 48 GB GPU (48 GB budget: L40S, A6000), 512 GB host RAM for sleeping models. The first 10% of
the trace is warm-up (every model's first load) and is left out of the figures.
Each request holds its model busy for 2-20 s (uniform).

Admission (``--admission neuron``; the default, ``unbounded``, is the first rounds' neuron): each
simulated model runs behind the real neuron's ``AdmissionGate`` (``cortex_neuron.admission``) with
the neuron's ``[admission]`` defaults: ``max_in_flight = 4`` requests run at once, up to
``max_queued = 16`` more wait for a slot, at most ``max_wait_s = 30`` s, and a request past either
bound is answered 503 ``model_overloaded`` (the gateway relays it; it does not fail over on a 503).
``/models`` and ``/health`` report ``in_flight`` and ``queued`` as the neuron does, so the gateway's
poller sees the queue and its scale-out rule (every replica has ``scale_out_queued`` requests queued
for ``scale_out_after_s``) can fire. Time spent queued is not a wait on a load or wake: it is
reported apart (``queued``, ``queue p99``, ``q503``). ``--admission unbounded`` is the first rounds'
neuron, on which every request runs at once (measured with both in docs/performance.md, "Fourth
round").

Catalogue (``--catalogue replicas``): every model may have up to
``max_replicas = 3`` (``min_replicas = 0``): the choice of an operator who cannot tell in
advance which of 40 models a burst or the drifting ranking makes hot, and lets any model whose
every replica queues grow to three (extra replicas are evicted like any idle resident).
``--catalogue hot``: only the most popular fifth of the models (the top priority tier, the
Zipf ranks an operator would expect to be hot) may have three, the rest one.
``--catalogue single`` (the default) is the first rounds' catalogue (``max_replicas = 1``): with
``--admission unbounded``, also the default, every earlier table is reproduced by its command.

Policies compared: ``unload-lru`` (today: lru, no sleep tier), ``lru+sleep``, ``priority+sleep``
(priorities 50/100/200 by popularity tier) and ``ttl-only`` (llama-swap-like: unload after
300 s idle, lru unload when room is needed, no sleep).

Run: ``python bench/fleet_sim.py`` (a few minutes on 2 cores); ``--quick`` for a short trace.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import selectors
import statistics
import time
import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

import cortex_gateway.fleet
import cortex_gateway.placement
import cortex_gateway.poller
import cortex_gateway.residency
import cortex_gateway.warm_up
from cortex_evictors.strategies import LeastRecentlyUsed, Priority
from cortex_gateway.fleet import Fleet, Node
from cortex_gateway.placement import Placement
from cortex_gateway.poller import Poller
from cortex_gateway.residency import Residency
from cortex_kernel.config.schema import AdmissionSection, Catalogue, ModelProfile, ResidencySection
from cortex_kernel.errors import CortexError, Overloaded
from cortex_neuron.admission import AdmissionGate

GB = 1024**3
MIB = 1024**2
# size name → (footprint GB, cold load s, wake s, sleep s, unload s); see the module docstring.
SIZES = {
    "8B": (22, 30.0, 1.0, 1.0, 2.0),
    "14B": (34, 40.0, 1.5, 1.5, 2.0),
    "32B": (38, 60.0, 3.0, 3.0, 3.0),
    "70B": (46, 100.0, 6.0, 6.0, 4.0),
}
NODE_DEVICE_GB = 48
# The gateway modules whose ``time`` reads the virtual clock during a run.
GATEWAY_MODULES = (
    cortex_gateway.fleet,
    cortex_gateway.placement,
    cortex_gateway.poller,
    cortex_gateway.residency,
)
NODE_HOST_GB = 512
# ``--admission unbounded``: a gate that never queues (every request runs at once).
UNBOUNDED = AdmissionSection(max_in_flight=10**9, max_queued=0)


@dataclass
class SimModel:
    state: str
    size: str
    gate: AdmissionGate
    last_used: float | None = None
    # Set when a load or wake in progress ends (the neuron's callers join it, as here).
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    # Being put to sleep: still "ready" in reports, but requests are refused (as the neuron does).
    dozing: bool = False

    def busy(self) -> bool:
        """Requests running or queued, as the neuron's ``model_busy`` checks count them."""
        return bool(self.gate.in_flight or self.gate.queued)


@dataclass
class SimNeuron:
    """One simulated neuron: the lifecycle routes the gateway calls, with the sizes' durations."""

    name: str
    clock: Clock
    host_budget: bool
    admission: AdmissionSection
    models: dict[str, SimModel] = field(default_factory=dict)
    loads: int = 0
    wakes: int = 0
    sleeps: int = 0

    def device_reserved(self) -> int:
        return sum(SIZES[m.size][0] * GB for m in self.models.values() if m.state != "sleeping")

    def host_reserved(self) -> int:
        return sum(SIZES[m.size][0] * GB for m in self.models.values() if m.state == "sleeping")

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "models": {
                k: {"state": m.state, "in_flight": m.gate.in_flight, "queued": m.gate.queued}
                for k, m in self.models.items()
            },
            "memory": {
                "budget_bytes": NODE_DEVICE_GB * GB,
                "reserved_bytes": self.device_reserved(),
                "host_budget_bytes": NODE_HOST_GB * GB if self.host_budget else None,
                "host_reserved_bytes": self.host_reserved(),
            },
        }

    def model_list(self) -> dict[str, Any]:
        return {
            "data": [
                {
                    "id": k,
                    "state": m.state,
                    "in_flight": m.gate.in_flight,
                    "queued": m.gate.queued,
                    "last_used": m.last_used,
                }
                for k, m in self.models.items()
            ]
        }

    async def call(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/models/load":
            profile = body["profile"]
            model_id, size = profile["id"], profile["options"]["size"]
            current = self.models.get(model_id)
            if current is not None and current.state == "sleeping":
                return await self.call("/models/wake", {"model": model_id})
            # As the neuron: a model already there is joined before the budget is checked.
            if current is not None and current.dozing:
                await current.settled.wait()
                return await self.call(path, body)
            if current is not None and current.state == "ready":
                return 200, {"id": model_id, "state": "ready", "memory_bytes": SIZES[size][0] * GB}
            if current is not None and current.state in ("loading", "waking"):  # joined, as the neuron does
                await current.settled.wait()
                return await self.call(path, body)
            if current is not None:  # unloading: come back later
                return 503, {"error": {"code": f"model_{current.state}", "message": "busy"}}
            if self.device_reserved() + SIZES[size][0] * GB > NODE_DEVICE_GB * GB:
                return 409, {"error": {"code": "over_budget", "message": "over budget"}}
            record = self.models[model_id] = SimModel(state="loading", size=size, gate=self.gate())
            await self.clock.sleep(SIZES[size][1])
            if self.models.get(model_id) is not record:
                return 409, {"error": {"code": "load_cancelled", "message": "unloaded meanwhile"}}
            record.state = "ready"
            record.settled.set()
            self.loads += 1
            return 200, {"id": model_id, "state": "ready", "memory_bytes": SIZES[size][0] * GB}
        model = self.models.get(body["model"])
        if model is None and path == "/models/unload":
            return 200, {"state": "absent"}  # idempotent, like the neuron's
        if model is None:
            return 404, {"error": {"code": "model_not_loaded", "message": "absent"}}
        if path == "/models/unload":
            if model.busy():
                return 409, {"error": {"code": "model_busy", "message": "busy"}}
            model.state = "unloading"
            model.settled.clear()
            await self.clock.sleep(SIZES[model.size][4])
            if self.models.get(body["model"]) is model:
                del self.models[body["model"]]
            model.settled.set()  # a load it cancelled: whoever joined it tries again
            return 200, {"state": "absent"}
        if path == "/models/sleep":
            if model.dozing:
                await model.settled.wait()
                return await self.call(path, body)
            if model.state == "sleeping":  # the neuron answers at once, as here
                return 200, {"state": "sleeping"}
            if model.busy():
                return 503, {"error": {"code": "model_busy", "message": "busy"}}
            if self.host_budget and self.host_reserved() + SIZES[model.size][0] * GB > NODE_HOST_GB * GB:
                return 409, {"error": {"code": "host_over_budget", "message": "host full"}}
            model.dozing = True
            model.settled.clear()
            await self.clock.sleep(SIZES[model.size][3])
            model.state, model.dozing = "sleeping", False
            model.settled.set()
            self.sleeps += 1
            return 200, {"state": "sleeping"}
        if path == "/models/wake":
            if model.dozing:  # as the neuron: one sleep or wake at a time, in turn
                await model.settled.wait()
                return await self.call(path, body)
            if model.state == "ready":
                return 200, {"state": "ready"}
            if model.state in ("loading", "waking"):  # joined, as the neuron does
                await model.settled.wait()
                return await self.call(path, body)
            if self.device_reserved() + SIZES[model.size][0] * GB > NODE_DEVICE_GB * GB:
                return 409, {"error": {"code": "over_budget", "message": "over budget"}}
            model.state = "waking"
            model.settled.clear()
            await self.clock.sleep(SIZES[model.size][2])
            model.state = "ready"
            model.settled.set()
            self.wakes += 1
            return 200, {"state": "ready"}
        return 404, {"error": {"code": "not_found", "message": path}}

    def gate(self) -> AdmissionGate:
        """A new model's admission, as the neuron's registry makes one per model."""
        a = self.admission
        return AdmissionGate(a.max_in_flight, a.max_queued, a.max_wait_s, a.class_priority, a.max_bypass)


class _JumpSelector(selectors.BaseSelector):
    """A selector that never blocks: where the loop would wait ``timeout`` for I/O, the virtual
    clock jumps ``timeout`` ahead instead (the simulation has no real I/O but the loop's own
    self-pipe, which is still polled)."""

    def __init__(self) -> None:
        self.real = selectors.DefaultSelector()
        self.now = 0.0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self.real.unregister(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self.real.select(0)
        if not ready:
            if timeout is None:
                raise RuntimeError("simulation stalled: nothing scheduled and nothing ready")
            self.now += timeout
        return ready

    def get_map(self) -> Any:
        return self.real.get_map()

    def close(self) -> None:
        self.real.close()


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated seconds: ``time()`` is the jump selector's clock."""

    def __init__(self) -> None:
        self.jumps = _JumpSelector()
        super().__init__(self.jumps)

    def time(self) -> float:
        return self.jumps.now


EPOCH = 1.7e9  # the virtual wall clock's start (any fixed date: outcomes must not depend on it)


class Clock:
    """Simulated seconds: the virtual loop's clock."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    def wall(self) -> float:
        return EPOCH + self.loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def virtual_time(clock: Clock) -> types.SimpleNamespace:
    """What the gateway modules see as ``time``: every clock virtual (their ``perf_counter``
    times loads and wakes, which are simulated). This module's own ``time`` stays real, so the
    decision times and poll costs it measures are the gateway's real CPU-bound work."""
    return types.SimpleNamespace(monotonic=clock.now, time=clock.wall, perf_counter=clock.now)


class _Reply:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self._raw = msgspec.json.encode(body)
        self.headers: dict[str, str] = {}

    async def read(self) -> bytes:
        return self._raw

    async def text(self) -> str:
        return self._raw.decode()

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise RuntimeError(f"HTTP {self.status}")


class SimSession:
    """Stands in for the gateway's aiohttp session: routes by endpoint to a :class:`SimNeuron`."""

    def __init__(self, neurons: dict[str, SimNeuron]) -> None:
        self.neurons = neurons

    def _split(self, url: str) -> tuple[SimNeuron, str]:
        rest = url.removeprefix("sim://")
        name, _, path = rest.partition("/")
        return self.neurons[name], "/" + path

    @asynccontextmanager
    async def get(self, url: str, **_: Any) -> AsyncIterator[_Reply]:
        neuron, path = self._split(url)
        if path == "/models":
            yield _Reply(200, neuron.model_list())
        elif path == "/health":
            yield _Reply(200, neuron.health())
        else:
            yield _Reply(200, {"devices": []})

    @asynccontextmanager
    async def post(self, url: str, json: Any = None, **_: Any) -> AsyncIterator[_Reply]:
        neuron, path = self._split(url)
        # A neuron carries a move through when its caller leaves (a cancelled placement).
        status, body = await asyncio.shield(asyncio.ensure_future(neuron.call(path, json or {})))
        yield _Reply(status, body)


@dataclass(frozen=True)
class Policy:
    name: str
    evictor: str
    sleep: bool
    idle_unload_s: float | None = None


# ``--catalogue``: ``max_replicas`` of the most popular fifth of the models (the top priority
# tier) and of the rest (see the module docstring).
CATALOGUES = {"replicas": (3, 3), "hot": (3, 1), "single": (1, 1)}

POLICIES = (
    Policy("unload-lru", "lru", sleep=False),
    Policy("lru+sleep", "lru", sleep=True),
    Policy("priority+sleep", "priority", sleep=True),
    Policy("ttl-only", "lru", sleep=False, idle_unload_s=300.0),
)


def catalogue(models: int, rng: random.Random, max_replicas: tuple[int, int] = (1, 1)) -> Catalogue:
    sizes = rng.choices(list(SIZES), weights=[50, 25, 15, 10], k=models)
    profiles = [
        ModelProfile(
            id=f"m{i:02d}",
            harness="sim",
            vram_mb=SIZES[size][0] * 1024,
            min_devices=0,
            priority=200 if i < models // 5 else 100 if i < models // 2 else 50,
            options={"size": size},
            max_replicas=max_replicas[0] if i < models // 5 else max_replicas[1],
        )
        for i, size in enumerate(sizes)
    ]
    return Catalogue(models=profiles)


def trace(models: int, duration_s: float, base_rate: float, rng: random.Random) -> list[tuple[float, str]]:
    """(arrival time, model) pairs: Zipf popularity, diurnal rate, bursts, drifting ranking."""
    weights = [1 / (rank + 1) ** 1.1 for rank in range(models)]
    arrivals: list[tuple[float, str]] = []
    t = 0.0
    burst_model, burst_until, next_burst = 0, -1.0, rng.uniform(0, 600)
    while t < duration_s:
        diurnal = 1 + 0.6 * math.sin(2 * math.pi * t / duration_s)
        t += rng.expovariate(base_rate * diurnal)
        if t >= next_burst:
            burst_model, burst_until, next_burst = rng.randrange(models), t + 60, t + rng.uniform(300, 900)
        shift = int(t // 1200)  # the ranking rotates every 20 minutes
        if t < burst_until and rng.random() < 0.5:
            index = burst_model
        else:
            index = (rng.choices(range(models), weights=weights)[0] + shift * 3) % models
        arrivals.append((t, f"m{index:02d}"))
    return arrivals


def wait_blockers(placement: Placement) -> Callable[[ModelProfile, frozenset[str]], frozenset[str]]:
    """A function naming, for a wait for room about to begin, what stands in the way on the
    nodes where the model sleeps: a resident still loading or waking, a busy resident whose only
    ready replica is there, or a busy resident with another ready replica (one routing could
    drain)."""

    def kinds(profile: ModelProfile, exclude: frozenset[str]) -> frozenset[str]:
        found: set[str] = set()
        for node in placement.room_wait.blocked(profile, exclude):
            for model_id, model in node.models.items():
                if model.state == "sleeping":
                    continue
                if model.state != "ready":
                    found.add(f"{model.state} resident")
                elif node.busy(model_id):
                    replicas = len(placement.fleet.replicas(model_id))
                    found.add("busy, other replica" if replicas > 1 else "busy, only replica")
        return frozenset(found)

    return kinds


def sdk_retry_delay(retry_after: float | None, retries: int) -> float:
    """How long an OpenAI or Anthropic SDK client waits before retrying a 503 (its default).

    It honours ``retry-after`` when that is at most 60 s, and otherwise backs off from 0.5 s
    to 8 s (docs: the SDKs' retry policy in the project's protocol notes); the jitter is left
    out so the run stays exactly repeatable.
    """
    if retry_after is not None and 0 < retry_after <= 60:
        return retry_after
    return min(0.5 * 2.0**retries, 8.0)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(policy: Policy, nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    replicas = (args.max_replicas, args.max_replicas) if args.max_replicas else CATALOGUES[args.catalogue]
    cat = catalogue(args.models, rng, max_replicas=replicas)
    duration = args.duration if nodes < 100 or args.quick else args.duration / 3
    arrivals = trace(args.models, duration, args.rate * nodes / 4, rng)
    warm_up = duration / 10
    clock = Clock()
    for module in GATEWAY_MODULES:
        module.time = virtual_time(clock)  # type: ignore[attr-defined]
    admission = (
        AdmissionSection(max_in_flight=args.max_in_flight) if args.admission == "neuron" else UNBOUNDED
    )
    neurons = {
        f"n{i:03d}": SimNeuron(f"n{i:03d}", clock, host_budget=policy.sleep, admission=admission)
        for i in range(nodes)
    }
    fleet = Fleet([Node(name=n, endpoint=f"sim://{n}") for n in neurons])
    session = SimSession(neurons)
    residency = Residency(
        ResidencySection(
            sleep=policy.sleep,
            idle_ttl_s=policy.idle_unload_s,
            hysteresis_s=30,
            thrash_window_s=120,
            ttl_check_interval_s=5,
            wake_wait_s=args.wake_wait if args.wake_wait is not None else ResidencySection().wake_wait_s,
            wake_hedge_s=args.wake_hedge if args.wake_hedge is not None else ResidencySection().wake_hedge_s,
        )
    )
    evictor = LeastRecentlyUsed() if policy.evictor == "lru" else Priority()
    poller = Poller(fleet, session, {}, interval_s=2)  # type: ignore[arg-type]
    placement = Placement(
        fleet,
        cat,
        session,  # type: ignore[arg-type]
        {},
        evictor=evictor,
        refresh=poller.refresh,
        reread=poller.poll_node,
        residency=residency,
    )
    poll_costs: list[float] = []
    started = time.perf_counter()
    await poller.poll_once()
    poll_costs.append(time.perf_counter() - started)
    # ``--warm-up``: an operator's warm-up of the sleep tier before traffic (``POST
    # /admin/warm-up``), on the virtual clock; the trace starts when it is done, and its loads
    # are reported apart from the trace's.
    warm_copies, warm_s = 0, 0.0
    if args.warm_up is not None and policy.sleep:
        slept = await cortex_gateway.warm_up.warm_up(placement, list(fleet), int(args.warm_up * GB))
        await poller.poll_once()
        warm_copies, warm_s = sum(len(m) for m in slept.values()), clock.now()
    warm_loads = sum(n.loads for n in neurons.values())
    warm_wakes = sum(n.wakes for n in neurons.values())
    residency.start()
    decisions: list[float] = []
    plan = placement.plan

    cpu: list[float] = []  # the same, in this thread's CPU time (immune to busy neighbours)

    def timed_plan(*a: Any, **k: Any) -> Any:
        began, began_cpu = time.perf_counter(), time.thread_time()
        try:
            return plan(*a, **k)
        finally:
            decisions.append(time.perf_counter() - began)
            cpu.append(time.thread_time() - began_cpu)

    placement.plan = timed_plan  # type: ignore[method-assign]
    # For ``--explain``: per wait for room, its length and what stood in the way when it began.
    blockers: list[tuple[float, frozenset[str]]] = []
    if args.explain:
        blockers_of = wait_blockers(placement)
        room_wait = placement.room_wait
        plain_wait = room_wait.wait

        async def recorded_wait(profile: ModelProfile, exclude: frozenset[str], cold: Any) -> Any:
            began, kinds = clock.now(), blockers_of(profile, exclude)
            try:
                return await plain_wait(profile, exclude, cold)
            finally:
                blockers.append((clock.now() - began, kinds))

        room_wait.wait = recorded_wait  # type: ignore[method-assign]
    waits: list[float] = []
    # Per counted request that waited: (wait, how it was served) for ``--explain``.
    served: list[tuple[float, str]] = []
    # For ``--explain``: the waits of each placement (model, when a request first found it
    # neither ready nor being placed), and how many nodes had every resident idle at each
    # counted arrival (where any model could be woken or loaded without waiting).
    placing_since: dict[str, float] = {}
    by_placement: dict[tuple[str, float], list[float]] = {}
    idle_nodes: list[int] = []
    failed = 0
    bounced = 0  # counted requests a neuron refused because the model had left (placed again)
    # Per counted request admitted: how long it queued at the neuron for a slot (0 if none);
    # and how many were answered 503 by the neuron's admission (queue full, or queued too long).
    queue_waits: list[float] = []
    overloaded = 0

    def all_idle(node: Node) -> bool:
        return all(
            m.state == "sleeping" or (m.state == "ready" and not node.busy(model_id))
            for model_id, m in node.models.items()
        )

    async def poll_forever() -> None:
        while True:
            await clock.sleep(2)
            began = time.perf_counter()
            await poller.poll_once()
            poll_costs.append(time.perf_counter() - began)

    async def one(arrival: float, model: str) -> None:
        nonlocal failed, overloaded, bounced
        counted = arrival >= warm_up
        asleep = {n for n, sim in neurons.items() if (m := sim.models.get(model)) and m.state == "sleeping"}
        if args.explain:  # read-only: nothing here may change what the gateway does
            if model not in placement._loads and not placement.fleet.replicas(model):
                placing_since[model] = clock.now()
            if counted:
                idle_nodes.append(sum(1 for n in fleet if all_idle(n)))
        began, began_cpu = time.perf_counter(), time.thread_time()
        t0 = clock.now()
        retries = 0
        refusals = 0
        while True:
            try:
                node, waited = await placement.node_for_request(model)
            except CortexError as exc:
                if retries == args.client_retries:
                    failed += counted
                    return
                await clock.sleep(sdk_retry_delay(exc.retry_after, retries))
                retries += 1
                continue
            sim = neurons[node.name].models.get(model)
            if sim is not None and sim.state == "ready" and not sim.dozing:
                break
            # The neuron refuses a model that is not ready (put to sleep or unloaded since the
            # gateway chose it): the gateway places the request again (``Forwarder``).
            refusals += 1
            bounced += counted
            if sim is not None and (sim.dozing or sim.state in ("unloading", "loading", "waking")):
                await sim.settled.wait()  # its 503 says so: placed again once the move is done
            await poller.poll_node(node)
        if retries or refusals:  # it waited from its first try to its answer
            waited = True
        elif not waited:
            decisions.append(time.perf_counter() - began)
            cpu.append(time.thread_time() - began_cpu)
        if counted:
            waits.append(clock.now() - t0 if waited else 0.0)
            if waited:
                how = "woken where it slept" if node.name in asleep else "cold load"
                elsewhere = ", asleep elsewhere" if asleep - {node.name} else ""
                served.append((clock.now() - t0, how + elsewhere))
                by_placement.setdefault((model, placing_since.get(model, t0)), []).append(clock.now() - t0)
        # As the gateway's proxy counts a request: from before it leaves until its reply ends.
        node.in_flight[model] = node.in_flight.get(model, 0) + 1
        node.last_routed[model] = clock.wall()
        queued_at = clock.now()
        try:
            async with sim.gate.admit():
                if counted:
                    queue_waits.append(clock.now() - queued_at)
                await clock.sleep(rng.uniform(2, 20))
        except Overloaded:  # the neuron's 503 model_overloaded, which the gateway relays
            overloaded += counted
        finally:
            sim.last_used = clock.wall()
            node.finished(model)

    poll_task = asyncio.get_running_loop().create_task(poll_forever())
    tasks: list[asyncio.Task[None]] = []
    for arrival, model in arrivals:
        delay = arrival + warm_s - clock.now()
        if delay > 0:
            await clock.sleep(delay)
        tasks.append(asyncio.get_running_loop().create_task(one(arrival, model)))
    await asyncio.gather(*tasks)
    poll_task.cancel()
    await residency.stop()
    waited = [w for w in waits if w > 0]
    if args.explain:
        tail = percentile(waits, 0.99)
        kinds = sorted({how for _, how in served})
        print(f"  {policy.name} {nodes} nodes: waits by how served (all / at or above p99 {tail:.1f} s)")
        wait = placement.room_wait
        print(f"    waits for room: {wait.waits} (woken: {wait.waits_won}, not: {wait.waits_lost})")
        for how in kinds:
            every = sum(1 for _, h in served if h == how)
            top = sum(1 for w, h in served if h == how and w >= tail)
            print(f"    {how:<45} {every:>6} {top:>6}")
        print("    waits for room by what stood in the way (all / lasting 12-40 s / over 40 s)")
        for why in sorted({kinds for _, kinds in blockers}, key=sorted):
            counts = [
                sum(1 for w, k in blockers if k == why and low <= w < high)
                for low, high in ((0, math.inf), (12, 40), (40, math.inf))
            ]
            label = " + ".join(sorted(why)) or "nothing"
            print(f"    {label:<60} {counts[0]:>6} {counts[1]:>6} {counts[2]:>6}")
        over = {key: [w for w in ws if w > args.over] for key, ws in by_placement.items()}
        over = {key: ws for key, ws in over.items() if ws}
        count = sum(len(ws) for ws in over.values())
        print(
            f"    requests that waited over {args.over:g} s: {count} "
            f"({count / max(1, len(waits)):.1%} of requests) in {len(over)} placements; the largest:"
        )
        sizes = {p.id: p.options["size"] for p in cat.models}
        for (model, start), ws in sorted(over.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:5]:
            line = f"{len(ws):>4} requests for {model} ({sizes[model]}) from t={start:.0f} s"
            print(f"      {line}, up to {max(ws):.0f} s")
        none = sum(1 for n in idle_nodes if n == 0) / max(1, len(idle_nodes))
        mean = statistics.mean(idle_nodes or [0])
        print(f"    nodes with every resident idle at an arrival: mean {mean:.1f}, none at {none:.1%}")
    return {
        "policy": policy.name,
        "nodes": nodes,
        "requests": sum(1 for arrival, _ in arrivals if arrival >= warm_up),
        "failed": failed,
        "cold_loads": sum(n.loads for n in neurons.values()) - warm_loads,
        "wakes": sum(n.wakes for n in neurons.values()) - warm_wakes,
        "warm_copies": warm_copies,
        "warm_s": warm_s,
        "thrash": residency.thrash_events,
        "scale_outs": residency.scale_outs,
        "queued": sum(1 for q in queue_waits if q > 0),
        "queue_p99": percentile(queue_waits, 0.99),
        "overloaded": overloaded,
        "bounced": bounced,
        "waited": len(waited),
        "wait_p50": percentile(waited, 0.5),
        "wait_p99": percentile(waits, 0.99),
        "decide_p50_ms": percentile(decisions, 0.5) * 1000,
        "decide_p99_ms": percentile(decisions, 0.99) * 1000,
        "decide_cpu_p99_ms": percentile(cpu, 0.99) * 1000,
        "poll_ms": statistics.median(poll_costs) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--duration", type=float, default=3600.0, help="simulated seconds of trace")
    parser.add_argument("--rate", type=float, default=0.5, help="requests/s per 4 nodes at the mean")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nodes", type=int, nargs="*", default=[4, 16, 100])
    parser.add_argument("--quick", action="store_true", help="a 15-minute trace")
    parser.add_argument("--wake-wait", type=float, help="[residency] wake_wait_s (default: its default)")
    parser.add_argument("--wake-hedge", type=float, help="[residency] wake_hedge_s (default: its default)")
    parser.add_argument("--explain", action="store_true", help="break waits down by how they were served")
    parser.add_argument("--over", type=float, default=20.0, help="--explain: count waits over this (s)")
    parser.add_argument("--policies", nargs="*", default=[p.name for p in POLICIES])
    parser.add_argument(
        "--client-retries",
        type=int,
        default=0,
        help="retries a client makes after a 503, as the OpenAI/Anthropic SDKs do (their default: 2); "
        "a retried request's wait runs from its first try (default: 0, a 503 is a failure); the neuron's "
        "own 503 (model_overloaded, with --admission neuron) is counted in q503 and not retried",
    )
    parser.add_argument(
        "--catalogue",
        choices=list(CATALOGUES),
        default="single",
        help="replicas: max_replicas = 3 for every model; single: max_replicas = 1 (the first rounds')",
    )
    parser.add_argument(
        "--admission",
        choices=["neuron", "unbounded"],
        default="unbounded",
        help="neuron: the neuron's [admission] defaults; unbounded: every request runs at once",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=AdmissionSection().max_in_flight,
        help="[admission] max_in_flight",
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        metavar="GB",
        help="before the trace, warm the sleep tier (POST /admin/warm-up) keeping GB of host RAM free",
    )
    parser.add_argument("--max-replicas", type=int, help="every model's max_replicas (overrides --catalogue)")
    args = parser.parse_args()
    if args.quick:
        args.duration = 900.0
    header = (
        f"{'policy':<15} {'nodes':>5} {'reqs':>6} {'fail':>4} {'cold':>5} {'wakes':>5} {'thrash':>6} "
        f"{'waited':>6} {'wait p50 s':>10} {'wait p99 s':>10} {'decide p50 ms':>13} {'decide p99 ms':>13} "
        f"{'cpu p99 ms':>10} "
        f"{'poll ms':>8} {'scale':>5} {'queued':>6} {'queue p99 s':>11} {'q503':>4} {'moved':>5}"
    )
    print(header)
    for nodes in args.nodes:
        for policy in (p for p in POLICIES if p.name in args.policies):
            with asyncio.Runner(loop_factory=VirtualLoop) as runner:
                r = runner.run(run(policy, nodes, args))
            for module in GATEWAY_MODULES:
                module.time = time  # type: ignore[attr-defined]
            if r["warm_copies"]:
                print(f"  warm-up: {r['warm_copies']} sleeping copies in {r['warm_s']:.0f} simulated s")
            print(
                f"{r['policy']:<15} {r['nodes']:>5} {r['requests']:>6} {r['failed']:>4} {r['cold_loads']:>5} "
                f"{r['wakes']:>5} {r['thrash']:>6} {r['waited']:>6} {r['wait_p50']:>10.2f} "
                f"{r['wait_p99']:>10.2f} {r['decide_p50_ms']:>13.3f} {r['decide_p99_ms']:>13.3f} "
                f"{r['decide_cpu_p99_ms']:>10.3f} "
                f"{r['poll_ms']:>8.2f} {r['scale_outs']:>5} {r['queued']:>6} {r['queue_p99']:>11.2f} "
                f"{r['overloaded']:>4} {r['bounced']:>5}",
                flush=True,
            )


if __name__ == "__main__":
    main()
