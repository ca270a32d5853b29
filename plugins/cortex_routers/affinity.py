"""``affinity`` and ``kv_aware``: send a session back to the replica that holds its prefix cache.

A coding agent resends its whole history on every turn; the replica that served the previous
turn has that prefix in its KV cache and starts in milliseconds, any other re-prefills it. So a
session is placed once by rendezvous (highest-random-weight) hashing of its key over the ready
replicas, which spreads sessions evenly and moves only the sessions of a replica that comes or
goes, and is then remembered: its next turns go back to the replica that served it while that
replica is within the load bound. The bound is that of consistent hashing with bounded loads
(Mirrokni et al.): a replica may take a request while its live load plus this one stays within
``ceil((1 + ε) x (total + 1) / replicas)``, so no replica carries much more than (1 + ε) x the
mean, and a session moves only when its replica is really overloaded, not because a poll was
stale. At least one replica is always within the bound.

The memory is per gateway and bounded (least recently routed sessions are forgotten first);
gateways that share a fleet agree anyway on every session they have not had to move, because the
hash is the same everywhere.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence

from cortex_kernel.routing import Replica, RouteChoice, RoutingFacts


def rendezvous(key: str, names: Sequence[str]) -> list[str]:
    """``names`` ordered by their rendezvous weight for ``key``, highest first."""

    def weight(name: str) -> bytes:
        return hashlib.blake2b(f"{key}\0{name}".encode(), digest_size=8).digest()

    return sorted(names, key=weight, reverse=True)


def capacity(loads: Sequence[float], epsilon: float) -> float:
    """The most load a replica may reach with this request counted: (1 + ε) x the mean, rounded up."""
    return math.ceil((1 + epsilon) * (sum(loads) + 1) / len(loads))


class Affinity:
    """A session goes back to the replica that served it while that replica is not overloaded.

    The session is ``facts.session_key``, else ``facts.fingerprint`` (the prompt's leading
    prefix: requests that share it share a cache too); a request with neither goes to the least
    loaded replica. The load is the gateway's live in-flight count for the model.
    """

    name = "affinity"

    def __init__(self, *, epsilon: float = 0.25, max_sessions: int = 65536) -> None:
        self.epsilon = epsilon
        self.max_sessions = max_sessions
        self._served: OrderedDict[tuple[str, str], str] = OrderedDict()

    def load(self, replica: Replica) -> float:
        """What the load bound counts on ``replica``."""
        return replica.in_flight

    def full(self, replica: Replica) -> bool:
        """Whether ``replica`` should take no session it can avoid (never, for plain affinity)."""
        return False

    def spare_key(self, replica: Replica) -> tuple[float, ...]:
        """How replicas outside a session's preference are ordered for failover: least loaded."""
        return (self.load(replica),)

    def route(self, facts: RoutingFacts) -> RouteChoice:
        replicas = {r.name: r for r in facts.replicas}
        key = facts.session_key or facts.fingerprint
        by_load = sorted(replicas, key=lambda n: (self.full(replicas[n]), *self.spare_key(replicas[n]), n))
        if key is None:
            return RouteChoice(order=tuple(by_load), outcome="no_key")
        bound = capacity([self.load(r) for r in facts.replicas], self.epsilon)

        def fits(name: str) -> bool:
            replica = replicas[name]
            return self.load(replica) + 1 <= bound and not self.full(replica)

        ranked = rendezvous(key, list(replicas))
        session = (facts.model, key)
        served = self._served.get(session)
        if served in replicas:
            preferred, outcome = served, "affinity_hit"
        else:
            preferred, outcome = ranked[0], "first_seen" if served is None else "fallback"
        if not fits(preferred):
            within = [n for n in ranked if fits(n)]
            moved = within[0] if within else by_load[0]
            if moved != preferred:
                preferred, outcome = moved, "moved_for_load"
        order = [preferred, *(n for n in ranked if n != preferred and fits(n))]
        order.extend(n for n in by_load if n not in order)
        self._remember(session, preferred)
        return RouteChoice(order=tuple(order), outcome=outcome)

    def _remember(self, session: tuple[str, str], replica: str) -> None:
        self._served[session] = replica
        self._served.move_to_end(session)
        while len(self._served) > self.max_sessions:
            self._served.popitem(last=False)


class KvAware(Affinity):
    """``affinity`` that also reads the engine's gauges where the neuron reports them (vLLM).

    A replica whose KV cache is at least ``kv_full_ratio`` used takes no session it can avoid
    (a full cache preempts and evicts, so the prefix would not stay anyway), the engine's own
    waiting queue counts as load (it holds other gateways' requests too), and spare replicas
    are ordered by load, then by KV-cache usage. Without gauges it is exactly ``affinity``.
    """

    name = "kv_aware"

    def __init__(
        self, *, epsilon: float = 0.25, max_sessions: int = 65536, kv_full_ratio: float = 0.9
    ) -> None:
        super().__init__(epsilon=epsilon, max_sessions=max_sessions)
        self.kv_full_ratio = kv_full_ratio

    def load(self, replica: Replica) -> float:
        return replica.in_flight + replica.engine.get("requests_waiting", 0.0)

    def full(self, replica: Replica) -> bool:
        return replica.engine.get("kv_cache_usage_ratio", 0.0) >= self.kv_full_ratio

    def spare_key(self, replica: Replica) -> tuple[float, ...]:
        return (self.load(replica), replica.engine.get("kv_cache_usage_ratio", 0.0))
