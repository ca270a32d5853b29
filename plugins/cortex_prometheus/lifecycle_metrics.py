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
        self.loads = Histogram(
            "cortex_model_load_duration_seconds",
            "Loads the gateway asked a node for, by result (ok or error), and how long each took.",
            ["node", "model", "result"],
            buckets=buckets.LOAD_SECONDS,
            registry=registry,
        )
        self.unloads = Counter(
            "cortex_model_unloads",
            "Models the gateway unloaded, by reason (requested by an operator, or evicted).",
            ["node", "model", "reason"],
            registry=registry,
        )
        self.evictions = Counter(
            "cortex_evictions",
            "Models evicted to make room for another, by the eviction strategy that chose them.",
            ["node", "model", "strategy"],
            registry=registry,
        )
        self.defrags = Counter(
            "cortex_defrag_restarts",
            "Engine restarts after defrag_after_cycles loads and unloads on a node.",
            ["node"],
            registry=registry,
        )
        self.poll_failures = Counter(
            "cortex_poll_failures",
            "Polls of a node that failed, by error type.",
            ["node", "error"],
            registry=registry,
        )
        self.sleeps = Counter(
            "cortex_model_sleeps",
            "Models the gateway put to sleep, by reason (evicted to make room, idle TTL, requested).",
            ["node", "model", "reason"],
            registry=registry,
        )
        self.wakes = Histogram(
            "cortex_model_wake_duration_seconds",
            "Wakes of sleeping models the gateway asked a node for, by result, and how long each took.",
            ["node", "model", "result"],
            buckets=buckets.LOAD_SECONDS,
            registry=registry,
        )
        self.thrash = Counter(
            "cortex_thrash_events",
            "Models placed back on a node less than thrash_window_s after they were evicted from it.",
            ["node", "model"],
            registry=registry,
        )
        self.scaling = Counter(
            "cortex_replica_scaling",
            "Replicas added to a hot model (out) or let go when idle beyond min_replicas (in).",
            ["node", "model", "kind"],
            registry=registry,
        )
        for node in nodes:
            self.defrags.labels(guards.node(node))
            self.thrash.labels(guards.node(node), guards.model("unknown"))

    def loaded(self, event: ModelLoaded) -> None:
        labels = (self.guards.node(event.node), self.guards.model(event.model), "ok" if event.ok else "error")
        self.loads.labels(*labels).observe(event.seconds)

    def unloaded(self, event: ModelUnloaded) -> None:
        node, model = self.guards.node(event.node), self.guards.model(event.model)
        self.unloads.labels(node, model, event.reason).inc()
        if event.reason == "evicted":
            self.evictions.labels(node, model, self.guards.strategy(event.strategy or "unknown")).inc()

    def slept(self, event: ModelSlept) -> None:
        node, model = self.guards.node(event.node), self.guards.model(event.model)
        self.sleeps.labels(node, model, event.reason).inc()
        if event.reason == "evicted":
            self.evictions.labels(node, model, self.guards.strategy(event.strategy or "unknown")).inc()

    def woken(self, event: ModelWoken) -> None:
        labels = (self.guards.node(event.node), self.guards.model(event.model), "ok" if event.ok else "error")
        self.wakes.labels(*labels).observe(event.seconds)

    def thrashed(self, event: ThrashDetected) -> None:
        self.thrash.labels(self.guards.node(event.node), self.guards.model(event.model)).inc()

    def scaled(self, event: ReplicaScaled) -> None:
        node, model = self.guards.node(event.node), self.guards.model(event.model)
        self.scaling.labels(node, model, event.direction).inc()

    def defragged(self, event: DefragRestarted) -> None:
        self.defrags.labels(self.guards.node(event.node)).inc()

    def poll_failed(self, event: PollFailed) -> None:
        self.poll_failures.labels(self.guards.node(event.node), self.guards.error(event.error)).inc()
