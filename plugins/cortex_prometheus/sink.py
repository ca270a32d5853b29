"""The event sink: one gateway's registry, fed only by the kernel's events.

Handlers never touch a metric; they emit :mod:`cortex_kernel.events` and this sink turns each
event into counter, histogram and gauge updates. ``handle`` runs on the event loop for every
request, so it only does arithmetic on in-memory families.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from cortex_kernel.events import Event, FleetPolled, RequestFinished, RoutingDecided
from cortex_prometheus.fleet_collector import FleetCollector
from cortex_prometheus.labels import Guards
from cortex_prometheus.lifecycle_metrics import LifecycleMetrics
from cortex_prometheus.request_metrics import RequestMetrics
from cortex_prometheus.routing_metrics import RoutingMetrics


class MetricsSink:
    """Satisfies :class:`cortex_kernel.events.EventSink`; owns its own registry.

    A registry per gateway, never prometheus-client's process-wide default: two gateways in one
    process (tests, an embedding application) must not share or collide on series.
    """

    def __init__(self, catalogue: Iterable[str], nodes: Iterable[str]) -> None:
        nodes = list(nodes)
        self.registry = CollectorRegistry(auto_describe=True)
        self.guards = Guards.build(self.registry, catalogue, nodes)
        self.requests = RequestMetrics(self.registry, self.guards)
        self.lifecycle = LifecycleMetrics(self.registry, self.guards, nodes)
        self.routing = RoutingMetrics(self.registry, self.guards)
        self.fleet = FleetCollector(self.guards)
        self.registry.register(self.fleet)

    def handle(self, event: Event) -> None:
        if isinstance(event, RequestFinished):
            self.requests.record(event)
        elif isinstance(event, FleetPolled):
            self.fleet.update(event, time.time())
        elif isinstance(event, RoutingDecided):
            self.routing.decided(event)
        else:
            self.lifecycle.handle(event)
