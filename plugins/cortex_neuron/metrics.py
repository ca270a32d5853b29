"""The neuron's own Prometheus metrics, in a registry of its own (never the process default).

Names start with ``cortex_neuron_`` so they cannot clash with the gateway's ``cortex_`` series or
an engine's (vLLM uses ``vllm:``). Live figures (queue depth, in-flight, model state) are read
at scrape time from the registry by a custom collector, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cortex_neuron.registry import ModelRegistry

STATES = ("loading", "ready", "sleeping", "unloading", "failed")


class _LiveCollector(Collector):
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "cortex_neuron_requests_in_flight", "Requests generating now.", labels=["model"]
        )
        queued = GaugeMetricFamily(
            "cortex_neuron_requests_queued", "Requests waiting for a slot.", labels=["model"]
        )
        state = GaugeMetricFamily(
            "cortex_neuron_model_state", "1 for the model's current state.", labels=["model", "state"]
        )
        memory = GaugeMetricFamily(
            "cortex_neuron_model_memory_bytes", "Memory a loaded model holds.", labels=["model"]
        )
        for record in self._registry:
            in_flight.add_metric([record.id], record.gate.in_flight)
            queued.add_metric([record.id], record.gate.queued)
            for name in STATES:
                state.add_metric([record.id, name], 1.0 if record.state == name else 0.0)
            if record.description and record.description.memory_bytes is not None:
                memory.add_metric([record.id], record.description.memory_bytes)
        yield from (in_flight, queued, state, memory)


class NeuronMetrics:
    """Counters and histograms the neuron records as it serves."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cortex_neuron_requests",
            "Requests answered, by model, endpoint and status class.",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "cortex_neuron_tokens",
            "Tokens processed, by model and kind (prompt or completion).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "cortex_neuron_rejections",
            "Requests turned away by admission control.",
            ["model"],
            registry=self.registry,
        )
        self.load_seconds = Histogram(
            "cortex_neuron_load_duration_seconds",
            "Time to load a model, by harness and result.",
            ["harness", "result"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200),
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(registry))
