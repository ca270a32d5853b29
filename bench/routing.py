"""Routers against a simulated fleet with prefix caches: cache hit ratio, TTFT and load balance.

A synthetic coding-agent workload (sessions whose prompt grows turn by turn from a shared system
prompt and tool list, with think time between turns, plus one-shot requests with no session) is
replayed, in simulated time, against K replicas. Each replica models a prefix cache (an LRU of
fixed-size KV blocks with a capacity, a hit being the longest cached run of leading blocks), a
cost per uncached prefill token (prefills queue one at a time, as compute-bound prefill does),
a much smaller cost per cached one, and a decode time per output token. The routers are the real
plugins, driven through :class:`cortex_kernel.routing.Router` and the kernel's
:func:`~cortex_kernel.routing.checked_route`, given each replica's live in-flight count exactly
as the gateway gives it. ``round_robin`` and ``oracle`` (a session placed once on the replica
with the fewest sessions and never moved) are baselines defined here.

    .venv/bin/python bench/routing.py                   # K = 4, 8, 16
    .venv/bin/python bench/routing.py --replicas 8 --sessions-per-replica 16 --seed 2

Printed per router and K: prompt-token cache hit ratio, simulated TTFT p50 / p99 (seconds),
and load imbalance: the busiest replica's time-averaged in-flight count over the mean.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import statistics
from collections import OrderedDict
from dataclasses import dataclass, field

from cortex_kernel.routing import Replica, RouteChoice, Router, RoutingFacts, checked_route
from cortex_routers.affinity import Affinity, KvAware
from cortex_routers.least_loaded import LeastLoaded

BLOCK = 64  # tokens per KV block


@dataclass
class Workload:
    system_tokens: int = 12_000  # system prompt + tool definitions, the same for every session
    first_message: tuple[int, int] = (1_000, 4_000)
    turns: tuple[int, int] = (8, 20)
    growth: tuple[int, int] = (500, 4_000)  # tool results and the user's next message per turn
    output: tuple[int, int] = (100, 400)
    think_s: float = 6.0  # mean pause between a reply and the next turn (tools running)
    session_start_s: float = 120.0  # sessions start uniformly over this window
    one_shot_per_replica_s: float = 0.05  # unrelated requests (titles, summaries) per replica per s
    one_shot_prompt: tuple[int, int] = (500, 3_000)


@dataclass
class Costs:
    uncached_s: float = 0.000_12  # per prompt token not in the cache (about 8k tokens/s of prefill)
    cached_s: float = 0.000_004  # per prompt token read from the cache
    decode_s: float = 0.025  # per output token
    capacity_tokens: int = 400_000  # KV cache per replica


@dataclass
class SimReplica:
    name: str
    capacity_blocks: int
    cache: OrderedDict[tuple[object, ...], None] = field(default_factory=OrderedDict)
    in_flight: int = 0
    prefill_free_at: float = 0.0
    busy_area: float = 0.0  # integral of in_flight over time
    last_change: float = 0.0

    def account(self, now: float) -> None:
        self.busy_area += self.in_flight * (now - self.last_change)
        self.last_change = now

    def prefill(self, blocks: list[tuple[object, ...]]) -> int:
        """Blocks of ``blocks`` already cached as a leading run; then all of them are cached."""
        hit = 0
        for block in blocks:
            if block not in self.cache:
                break
            hit += 1
        for block in blocks:
            self.cache[block] = None
            self.cache.move_to_end(block)
        while len(self.cache) > self.capacity_blocks:
            self.cache.popitem(last=False)
        return hit


class RoundRobin:
    """Each request to the next replica in turn (a baseline; not a plugin)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = itertools.count()

    def route(self, facts: RoutingFacts) -> RouteChoice:
        names = sorted(r.name for r in facts.replicas)
        start = next(self._next) % len(names)
        return RouteChoice(order=tuple(names[start:] + names[:start]))


class Oracle:
    """A session is placed once, on the replica holding the fewest sessions, and never moved;
    requests without a session go least-loaded. The upper bound on what affinity can keep."""

    name = "oracle"

    def __init__(self) -> None:
        self._home: dict[str, str] = {}
        self._sessions: dict[str, int] = {}

    def route(self, facts: RoutingFacts) -> RouteChoice:
        names = [r.name for r in facts.replicas]
        key = facts.session_key
        if key is None:
            return RouteChoice(
                order=tuple(
                    sorted(names, key=lambda n: next(r.in_flight for r in facts.replicas if r.name == n))
                )
            )
        home = self._home.get(key)
        if home is None:
            home = min(names, key=lambda n: (self._sessions.get(n, 0), n))
            self._home[key] = home
            self._sessions[home] = self._sessions.get(home, 0) + 1
        return RouteChoice(order=(home, *(n for n in names if n != home)))


@dataclass
class Request:
    session: int | None
    prompt_tokens: int
    output_tokens: int
    turn: int = 0
    turns_left: int = 0


def blocks_of(request: Request, system_tokens: int, serial: int) -> list[tuple[object, ...]]:
    """The KV blocks of a prompt: the shared system blocks, then the session's own; a partial last
    block is unique to this request (its content changes on the next turn)."""
    total = -(-request.prompt_tokens // BLOCK)
    shared = system_tokens // BLOCK
    owner: object = request.session if request.session is not None else ("one-shot", serial)
    blocks: list[tuple[object, ...]] = [("system", i) for i in range(min(shared, total))]
    blocks.extend((owner, i) for i in range(shared, total))
    if request.prompt_tokens % BLOCK:
        blocks[-1] = (*blocks[-1], "partial", serial)
    return blocks


def simulate(
    router: Router, replicas: int, sessions: int, workload: Workload, costs: Costs, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
    fleet = {f"r{i:02d}": SimReplica(f"r{i:02d}", costs.capacity_tokens // BLOCK) for i in range(replicas)}
    # (when, order, kind, payload): "arrive" carries a Request, "finish" (replica name, Request)
    events: list[tuple[float, int, str, Request | tuple[str, Request]]] = []
    serial = itertools.count()
    for session in range(sessions):
        first = workload.system_tokens + rng.randint(*workload.first_message)
        request = Request(session, first, rng.randint(*workload.output), 0, rng.randint(*workload.turns) - 1)
        heapq.heappush(events, (rng.uniform(0, workload.session_start_s), next(serial), "arrive", request))
    horizon = workload.session_start_s + 240.0
    rate = workload.one_shot_per_replica_s * replicas
    t = rng.expovariate(rate)
    while t < horizon:
        request = Request(None, rng.randint(*workload.one_shot_prompt), rng.randint(20, 80))
        heapq.heappush(events, (t, next(serial), "arrive", request))
        t += rng.expovariate(rate)

    ttft: list[float] = []
    prompt_total = cached_total = 0
    now = 0.0
    while events:
        now, n, kind, payload = heapq.heappop(events)
        if kind == "finish":
            assert isinstance(payload, tuple)
            name, request = payload
            replica = fleet[name]
            replica.account(now)
            replica.in_flight -= 1
            if request.turns_left > 0:
                grown = request.prompt_tokens + request.output_tokens + rng.randint(*workload.growth)
                follow = Request(
                    request.session,
                    grown,
                    rng.randint(*workload.output),
                    request.turn + 1,
                    request.turns_left - 1,
                )
                heapq.heappush(
                    events, (now + rng.expovariate(1 / workload.think_s), next(serial), "arrive", follow)
                )
            continue
        assert isinstance(payload, Request)
        request = payload
        facts = RoutingFacts(
            model="m",
            session_key=f"session-{request.session}" if request.session is not None else None,
            fingerprint=None if request.session is not None else f"fp:{n}",
            replicas=tuple(Replica(name=r.name, in_flight=r.in_flight) for r in fleet.values()),
        )
        replica = fleet[checked_route(router, facts).order[0]]
        blocks = blocks_of(request, workload.system_tokens, n)
        hit = min(replica.prefill(blocks) * BLOCK, request.prompt_tokens)
        prompt_total += request.prompt_tokens
        cached_total += hit
        start = max(now, replica.prefill_free_at)
        prefill = (request.prompt_tokens - hit) * costs.uncached_s + hit * costs.cached_s
        replica.prefill_free_at = start + prefill
        first_token = start + prefill - now
        ttft.append(first_token)
        replica.account(now)
        replica.in_flight += 1
        done = now + first_token + request.output_tokens * costs.decode_s
        heapq.heappush(events, (done, next(serial), "finish", (replica.name, request)))
    for replica in fleet.values():
        replica.account(now)
    averages = [r.busy_area / now for r in fleet.values()]
    cuts = statistics.quantiles(ttft, n=100)
    return {
        "hit": cached_total / prompt_total,
        "p50": statistics.median(ttft),
        "p99": cuts[98],
        "imbalance": max(averages) / statistics.fmean(averages),
    }


def routers(epsilon: float) -> list[Router]:
    return [LeastLoaded(), RoundRobin(), Affinity(epsilon=epsilon), KvAware(epsilon=epsilon), Oracle()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, nargs="*", default=[4, 8, 16])
    parser.add_argument("--sessions-per-replica", type=int, default=12)
    parser.add_argument("--epsilon", type=float, default=0.25, help="[routing.affinity] load_epsilon")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workload, costs = Workload(), Costs()
    columns = ("hit ratio", "vs oracle", "TTFT p50", "TTFT p99")
    print(f"{'K':>3} {'router':<13} " + " ".join(f"{c:>9}" for c in columns) + f" {'max/mean':>8}")
    for k in args.replicas:
        results = {
            router.name: simulate(router, k, k * args.sessions_per_replica, workload, costs, args.seed)
            for router in routers(args.epsilon)
        }
        oracle = results["oracle"]["hit"]
        for name, r in results.items():
            print(
                f"{k:>3} {name:<13} {r['hit']:>9.3f} {r['hit'] / oracle:>9.2f} "
                f"{r['p50']:>8.2f}s {r['p99']:>8.2f}s {r['imbalance']:>8.2f}"
            )


if __name__ == "__main__":
    main()
