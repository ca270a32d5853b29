"""The neuron's own Prometheus metrics, in a registry of its own (never the process default).

Names start with ``cortex_neuron_`` so they cannot clash with the gateway's ``cortex_`` series or
an engine's (vLLM uses ``vllm:``). Live figures (queue depth, in-flight, model state, memory)
are read at scrape time by custom collectors, so they are never stale.

The gateway measures requests as a client sees them; the neuron measures the harness: how long
a request waited for an admission slot, then how long the engine took to its first token and to
its last, and how long loads, sleeps and wakes took. The difference between the two is network
and gateway time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cortex_kernel.harness import Delta
from cortex_neuron.registry import ModelRecord, ModelRegistry, Transition

STATES = ("loading", "ready", "sleeping", "waking", "unloading", "failed")

# The same boundaries as the gateway's histograms of the same kind (see docs/metrics.md), so the
# two can be compared bucket by bucket. From a granted slot to the first token: vLLM's buckets.
FIRST_TOKEN_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0,
)  # fmt: skip
GENERATION_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
)  # fmt: skip
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)
WAKE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


# Engine stats (from a harness's optional ``engine_stats``) → metric name, kind, help.
ENGINE_METRICS: dict[str, tuple[str, str, str]] = {
    "requests_running": ("cortex_neuron_engine_requests_running", "gauge", "Requests the engine is running."),
    "requests_waiting": ("cortex_neuron_engine_requests_waiting", "gauge", "Requests waiting in the engine."),
    "kv_cache_usage_ratio": (
        "cortex_neuron_engine_kv_cache_usage_ratio",
        "gauge",
        "KV-cache blocks in use, 0-1.",
    ),
    "prefix_cache_queries_total": (
        "cortex_neuron_engine_prefix_cache_queries",
        "counter",
        "Prompt tokens looked up in the prefix cache.",
    ),
    "prefix_cache_hits_total": (
        "cortex_neuron_engine_prefix_cache_hits",
        "counter",
        "Prompt tokens found in the prefix cache.",
    ),
    "preemptions_total": ("cortex_neuron_engine_preemptions", "counter", "Requests preempted by the engine."),
    "prompt_tokens_total": (
        "cortex_neuron_engine_prompt_tokens",
        "counter",
        "Prompt tokens the engine processed.",
    ),
    "generation_tokens_total": (
        "cortex_neuron_engine_generation_tokens",
        "counter",
        "Tokens the engine generated.",
    ),
}


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
        max_in_flight = GaugeMetricFamily(
            "cortex_neuron_admission_max_in_flight", "Slots a model has for generation.", labels=["model"]
        )
        max_queued = GaugeMetricFamily(
            "cortex_neuron_admission_max_queued", "Requests a model's queue holds.", labels=["model"]
        )
        state = GaugeMetricFamily(
            "cortex_neuron_model_state", "1 for the model's current state.", labels=["model", "state"]
        )
        memory = GaugeMetricFamily(
            "cortex_neuron_model_memory_bytes", "Memory a loaded model holds.", labels=["model"]
        )
        cycles = GaugeMetricFamily(
            "cortex_neuron_lifecycle_cycles", "Loads and unloads since the engines last restarted."
        )
        cycles.add_metric([], self._registry.cycles)
        for record in self._registry:
            in_flight.add_metric([record.id], record.gate.in_flight)
            queued.add_metric([record.id], record.gate.queued)
            max_in_flight.add_metric([record.id], record.gate.max_in_flight)
            max_queued.add_metric([record.id], record.gate.max_queued)
            for name in STATES:
                state.add_metric([record.id, name], 1.0 if record.state == name else 0.0)
            if record.description and record.description.memory_bytes is not None:
                memory.add_metric([record.id], record.description.memory_bytes)
        yield from (in_flight, queued, max_in_flight, max_queued, state, memory, cycles)
        yield from self._engine_families()

    def _engine_families(self) -> Iterator[Metric]:
        """Gauges and counters read from engines that keep their own stats (vLLM)."""
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for record in self._registry:
            stats = self._registry.engine_stats(record)
            for key, (name, kind, text) in ENGINE_METRICS.items():
                if stats is None or key not in stats:
                    continue
                family = families.get(name)
                if family is None:
                    cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
                    family = families[name] = cls(name, text, labels=["model"])
                family.add_metric([record.id], float(stats[key]))
        yield from families.values()


class HostCollector(Collector):
    """Process and device memory, as last refreshed before a scrape.

    Device figures come from NVML, which may block; the ``/metrics`` handler reads them in a
    thread and hands them over with :meth:`refresh` rather than reading them in ``collect``.
    """

    def __init__(self) -> None:
        self._host: dict[str, int | None] = {}
        self._devices: list[dict[str, Any]] = []

    def refresh(
        self, *, rss: int | None, available: int | None, budget: int | None, devices: list[dict[str, Any]]
    ) -> None:
        self._host = {
            "cortex_neuron_resident_memory_bytes": rss,
            "cortex_neuron_memory_available_bytes": available,
            "cortex_neuron_memory_budget_bytes": budget,
        }
        self._devices = devices

    def collect(self) -> Iterator[Metric]:
        help_texts = {
            "cortex_neuron_resident_memory_bytes": "Resident memory of the neuron process.",
            "cortex_neuron_memory_available_bytes": "Host memory available to new allocations.",
            "cortex_neuron_memory_budget_bytes": "The memory_budget_mb models may use, when configured.",
        }
        for name, text in help_texts.items():
            family = GaugeMetricFamily(name, text)
            value = self._host.get(name)
            if value is not None:
                family.add_metric([], value)
            yield family
        device_families = {
            "memory_used_bytes": GaugeMetricFamily(
                "cortex_neuron_device_memory_used_bytes", "Device memory in use.", labels=["device"]
            ),
            "memory_free_bytes": GaugeMetricFamily(
                "cortex_neuron_device_memory_free_bytes", "Device memory free.", labels=["device"]
            ),
            "utilization_pct": GaugeMetricFamily(
                "cortex_neuron_device_utilization_ratio",
                "Device compute utilisation, 0 to 1.",
                labels=["device"],
            ),
        }
        for device in self._devices:
            for key, family in device_families.items():
                value = device.get(key)
                if value is not None:
                    scale = 100 if key == "utilization_pct" else 1
                    family.add_metric([str(device.get("index", 0))], value / scale)
        yield from device_families.values()


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
            "Tokens processed, by model and kind (prompt, completion, or cached: prompt tokens served "
            "from the engine's prefix cache, a part of prompt).",
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
            "Time to load a model, by model, harness and result (ok or error), however the load began.",
            ["model", "harness", "result"],
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "cortex_neuron_queue_wait_seconds",
            "Time a generation waited for an admission slot.",
            ["model"],
            buckets=QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "cortex_neuron_time_to_first_token_seconds",
            "Time from a granted slot to the harness's first generated text (prefill).",
            ["model"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.generation = Histogram(
            "cortex_neuron_generation_duration_seconds",
            "Time from a granted slot to the harness's last delta, for generations that completed.",
            ["model"],
            buckets=GENERATION_BUCKETS,
            registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "cortex_neuron_output_tokens_per_second",
            "Decode rate of one generation: tokens after the first over the time after the first.",
            ["model"],
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=self.registry,
        )
        self.sleeps = Counter(
            "cortex_neuron_model_sleeps", "Models put to sleep.", ["model"], registry=self.registry
        )
        self.wake_seconds = Histogram(
            "cortex_neuron_wake_duration_seconds",
            "Time to wake a sleeping model.",
            ["model"],
            buckets=WAKE_BUCKETS,
            registry=self.registry,
        )
        self.host = HostCollector()
        self.registry.register(_LiveCollector(registry))
        self.registry.register(self.host)
        registry.on_transition = self.transition

    def transition(self, record: ModelRecord, transition: Transition, seconds: float) -> None:
        """Called by the model registry after every load, sleep and wake."""
        if transition in ("loaded", "load_failed"):
            result = "ok" if transition == "loaded" else "error"
            self.load_seconds.labels(record.id, record.harness, result).observe(seconds)
            if transition == "loaded":
                # Present at zero from the start, so "rejections per second" reads 0, not "no data".
                self.rejections.labels(record.id)
                self.sleeps.labels(record.id)
        elif transition == "slept":
            self.sleeps.labels(record.id).inc()
        else:
            self.wake_seconds.labels(record.id).observe(seconds)

    def timer(self, model: str, admitted: float) -> GenerationTimer:
        return GenerationTimer(self, model, admitted)


class GenerationTimer:
    """Harness-level timing of one generation, from the moment it was granted its slot."""

    def __init__(self, metrics: NeuronMetrics, model: str, admitted: float) -> None:
        self._metrics = metrics
        self._model = model
        self._admitted = admitted
        self._first: float | None = None
        self._completion = 0

    def delta(self, delta: Delta, now: float) -> None:
        if self._first is None and (delta.text or delta.reasoning or delta.tool_calls):
            self._first = now
            self._metrics.first_token.labels(self._model).observe(now - self._admitted)
        if delta.usage is not None:
            self._completion = delta.usage.completion_tokens

    def finished(self, now: float) -> None:
        self._metrics.generation.labels(self._model).observe(now - self._admitted)
        first = self._first
        if first is not None and self._completion > 1 and now > first:
            rate = (self._completion - 1) / (now - first)
            self._metrics.tokens_per_second.labels(self._model).observe(rate)
