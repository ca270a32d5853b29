"""Fleet gauges rendered at scrape time from the last ``FleetPolled`` snapshot.

The poller sends the whole fleet after every poll, so the gauges are rebuilt from that snapshot
instead of being set one by one: a model that left a node, or a device that vanished, simply
stops being exported, and no stale series lingers with its last value.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cortex_kernel.events import FleetPolled, NodeSnapshot
from cortex_prometheus.labels import MODEL_STATES, OVERFLOW, Guards


class FleetCollector(Collector):
    """Node, device and per-model gauges for one gateway."""

    def __init__(self, guards: Guards) -> None:
        self.guards = guards
        self._snapshot: FleetPolled | None = None
        self._polled_at: float | None = None

    def update(self, event: FleetPolled, now: float) -> None:
        """Keep ``event`` for the next scrape; models the nodes report become valid labels."""
        for node in event.nodes:
            for model in node.models:
                self.guards.model.learn(model.model)
        self._snapshot = event
        self._polled_at = now

    def describe(self) -> Iterator[Metric]:
        # Without a describe, the registry would call collect() at registration to learn names.
        return iter(self._render(Samples()))

    def collect(self) -> Iterator[Metric]:
        samples = Samples()
        if self._polled_at is not None:
            samples.add("cortex_fleet_last_poll_timestamp_seconds", (), self._polled_at)
        if self._snapshot is not None:
            for node in self._snapshot.nodes:
                self._add_node(samples, node)
        return iter(self._render(samples))

    def _add_node(self, samples: Samples, node: NodeSnapshot) -> None:
        name = self.guards.node(node.node)
        samples.add("cortex_node_up", (name,), 1.0 if node.up else 0.0)
        samples.add("cortex_node_draining", (name,), 1.0 if node.draining else 0.0)
        for device in node.devices:
            index = (name, self.guards.device(str(device.index)))
            if device.memory_used_bytes is not None:
                samples.add("cortex_device_memory_used_bytes", index, device.memory_used_bytes)
            if device.memory_free_bytes is not None:
                samples.add("cortex_device_memory_free_bytes", index, device.memory_free_bytes)
            if device.utilization_pct is not None:
                samples.add("cortex_device_utilization_ratio", index, device.utilization_pct / 100)
        for model in node.models:
            label = (name, self.guards.model(model.model))
            current = model.state if model.state in MODEL_STATES else OVERFLOW
            for state in (*MODEL_STATES, OVERFLOW):
                if state in MODEL_STATES or state == current:
                    samples.add("cortex_model_state", (*label, state), 1.0 if state == current else 0.0)
            # The snapshot's in_flight is the routing load: queued requests included.
            samples.add("cortex_model_requests_in_flight", label, max(0, model.in_flight - model.queued))
            samples.add("cortex_model_requests_queued", label, model.queued)

    @staticmethod
    def _render(samples: Samples) -> list[GaugeMetricFamily]:
        families = []
        for name, (documentation, labels) in FAMILIES.items():
            family = GaugeMetricFamily(name, documentation, labels=list(labels))
            for values, value in samples.of(name):
                family.add_metric(list(values), value)
            families.append(family)
        return families


class Samples:
    """Gauge values by family and label values; values that fold into one label set are summed
    (two models both shown as ``unknown``), because a repeated series is invalid exposition."""

    def __init__(self) -> None:
        self._values: dict[str, dict[tuple[str, ...], float]] = {}

    def add(self, family: str, labels: tuple[str, ...], value: float) -> None:
        values = self._values.setdefault(family, {})
        values[labels] = values.get(labels, 0.0) + value

    def of(self, family: str) -> list[tuple[tuple[str, ...], float]]:
        return list(self._values.get(family, {}).items())


FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cortex_node_up": ("1 when the node answered its last polls.", ("node",)),
    "cortex_node_draining": ("1 while the node is drained for an engine restart.", ("node",)),
    "cortex_device_memory_used_bytes": ("Device memory in use.", ("node", "device")),
    "cortex_device_memory_free_bytes": ("Device memory free.", ("node", "device")),
    "cortex_device_utilization_ratio": ("Device compute utilisation, 0 to 1.", ("node", "device")),
    "cortex_model_state": (
        "1 for the state a model is in on a node, 0 for the others.",
        ("node", "model", "state"),
    ),
    "cortex_model_requests_in_flight": (
        "Requests generating on a node for a model, or sent there by the gateway and not yet answered.",
        ("node", "model"),
    ),
    "cortex_model_requests_queued": (
        "Requests waiting in a node's admission queue for a model.",
        ("node", "model"),
    ),
    "cortex_fleet_last_poll_timestamp_seconds": ("Unix time of the gateway's last poll of the fleet.", ()),
}
