"""Routing decisions as a counter: how often sessions found their replica, moved, or fell back.

Fed by the gateway's ``RoutingDecided`` events (one per decision). With ``affinity`` a falling
``affinity_hit`` share, or a rising ``moved_for_load``, is the first sign that prefix caches are
being lost to load; ``refused`` and ``error`` count answers of a router plugin the kernel had to
overrule.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from cortex_kernel.events import RoutingDecided
from cortex_prometheus.labels import Guards


class RoutingMetrics:
    """The routing family, registered in one gateway's registry."""

    def __init__(self, registry: CollectorRegistry, guards: Guards) -> None:
        self.guards = guards
        self.decisions = Counter(
            "cortex_gateway_routing_decisions",
            "Replica choices by router and outcome (least_loaded with one ready replica is not counted).",
            ["router", "outcome"],
            registry=registry,
        )

    def decided(self, event: RoutingDecided) -> None:
        self.decisions.labels(self.guards.strategy(event.router), self.guards.reason(event.outcome)).inc()
