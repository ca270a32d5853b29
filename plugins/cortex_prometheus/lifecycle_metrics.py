"""Model lifecycle and node trouble as counters: loads, unloads, evictions, defrags, poll failures.

These come from events the gateway emits as it acts (``ModelLoaded``, ``ModelUnloaded``,
``DefragRestarted``, ``PollFailed``), so they count what the gateway did, not what a poll
happened to catch. Per-node families are created at zero for every configured node: a panel or
an alert on "defrag restarts in the last hour" then reads 0, not "no data".
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from cortex_kernel.events import (
    DefragRestarted,
    Event,
    ModelLoaded,
    ModelSlept,
    ModelUnloaded,
    ModelWoken,
    PollFailed,
    ReplicaScaled,
    ThrashDetected,
)
from cortex_prometheus import buckets
from cortex_prometheus.labels import Guards


class LifecycleMetrics:
    """The lifecycle families, registered in one gateway's registry."""

    def __init__(self, registry: CollectorRegistry, guards: Guards, nodes: Iterable[str]) -> None:
        self.guards = guards

        def counter(name: str, doc: str, labels: str) -> Counter:
            return Counter(name, doc, labels.split(), registry=registry)

        def timed(name: str, doc: str) -> Histogram:
            labels = ["node", "model", "result"]
            return Histogram(name, doc, labels, buckets=buckets.LOAD_SECONDS, registry=registry)

        self.loads = timed(
            "cortex_model_load_duration_seconds",
            "Loads the gateway asked a node for, by result (ok or error), and how long each took.",
        )
        self.wakes = timed(
            "cortex_model_wake_duration_seconds",
            "Wakes of sleeping models the gateway asked a node for, by result, and how long each took.",
        )
        self.unloads = counter(
            "cortex_model_unloads",
            "Models the gateway unloaded, by reason (requested by an operator, or evicted).",
            "node model reason",
        )
        self.sleeps = counter(
            "cortex_model_sleeps",
            "Models the gateway put to sleep, by reason (evicted to make room, idle TTL, requested).",
            "node model reason",
        )
        self.evictions = counter(
            "cortex_evictions",
            "Models evicted to make room for another, by the eviction strategy that chose them.",
            "node model strategy",
        )
        self.defrags = counter(
            "cortex_defrag_restarts",
            "Engine restarts after defrag_after_cycles loads and unloads on a node.",
            "node",
        )
        self.poll_failures = counter(
            "cortex_poll_failures", "Polls of a node that failed, by error type.", "node error"
        )
        self.thrash = counter(
            "cortex_thrash_events",
            "Models placed back on a node less than thrash_window_s after they were evicted from it.",
            "node model",
        )
        self.scaling = counter(
            "cortex_replica_scaling",
            "Replicas added to a hot model (out) or let go when idle beyond min_replicas (in).",
            "node model kind",
        )
        for node in nodes:
            self.defrags.labels(guards.node(node))
            self.thrash.labels(guards.node(node), guards.model("unknown"))

    def handle(self, event: Event) -> bool:
        """Record ``event`` if it is one of the lifecycle events; False (nothing done) otherwise, so
        the sink hands every event here without naming each kind twice."""
        if isinstance(event, (ModelLoaded, ModelWoken)):
            family = self.loads if isinstance(event, ModelLoaded) else self.wakes
            result = "ok" if event.ok else "error"
            family.labels(self.guards.node(event.node), self.guards.model(event.model), result).observe(
                event.seconds
            )
        elif isinstance(event, (ModelUnloaded, ModelSlept)):
            self._removed(self.unloads if isinstance(event, ModelUnloaded) else self.sleeps, event)
        elif isinstance(event, ThrashDetected):
            self.thrash.labels(self.guards.node(event.node), self.guards.model(event.model)).inc()
        elif isinstance(event, ReplicaScaled):
            node, model = self.guards.node(event.node), self.guards.model(event.model)
            self.scaling.labels(node, model, event.direction).inc()
        elif isinstance(event, DefragRestarted):
            self.defrags.labels(self.guards.node(event.node)).inc()
        elif isinstance(event, PollFailed):
            self.poll_failures.labels(self.guards.node(event.node), self.guards.error(event.error)).inc()
        else:
            return False
        return True

    def _removed(self, family: Counter, event: ModelUnloaded | ModelSlept) -> None:
        """An unload or a sleep, by reason; one made to make room also counts as an eviction."""
        node, model = self.guards.node(event.node), self.guards.model(event.model)
        family.labels(node, model, event.reason).inc()
        if event.reason == "evicted":
            self.evictions.labels(node, model, self.guards.strategy(event.strategy or "unknown")).inc()
