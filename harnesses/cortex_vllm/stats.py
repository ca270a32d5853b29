"""Per-engine gauges the gateway can route on, read from the engine's own scheduler statistics.

vLLM hands scheduler and iteration statistics to every stat logger an ``AsyncLLM`` was built
with, on each step that produced output. The harness gives each engine one small logger that
copies the figures into an :class:`EngineGauges` (and turns vLLM's periodic log lines off). vLLM
still adds its Prometheus logger, but that one registers process-global ``vllm:`` collectors
which the second engine in a process unregisters again, and the neuron exports its own registry
only; so the neuron exports these gauges, per model, under its own names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vllm.config import VllmConfig
from vllm.v1.metrics.loggers import StatLoggerBase
from vllm.v1.metrics.stats import IterationStats, MultiModalCacheStats, SchedulerStats


@dataclass
class EngineGauges:
    """The last scheduler figures of one engine, plus running totals since it started."""

    requests_running: int = 0
    requests_waiting: int = 0
    kv_cache_usage: float = 0.0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    preemptions: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0

    def record(self, scheduler: SchedulerStats | None, iteration: IterationStats | None) -> None:
        if scheduler is not None:
            self.requests_running = scheduler.num_running_reqs
            self.requests_waiting = scheduler.num_waiting_reqs + scheduler.num_skipped_waiting_reqs
            self.kv_cache_usage = float(scheduler.kv_cache_usage)
            prefix = scheduler.prefix_cache_stats
            if prefix is not None:
                self.prefix_cache_queries += prefix.queries
                self.prefix_cache_hits += prefix.hits
        if iteration is not None:
            self.preemptions += iteration.num_preempted_reqs
            self.prompt_tokens += iteration.num_prompt_tokens
            self.generation_tokens += iteration.num_generation_tokens

    def snapshot(self, *, unfinished: int, sleeping: bool) -> dict[str, float]:
        """The figures under the names ``engine_stats`` reports.

        ``unfinished`` is the frontend's own count of requests not yet finished; scheduler
        figures arrive only with output, so once it reaches zero the last ones may be stale.
        """
        idle = unfinished == 0 or sleeping
        return {
            "requests_running": 0.0 if idle else float(self.requests_running),
            "requests_waiting": 0.0 if idle else float(self.requests_waiting),
            "requests_unfinished": float(unfinished),
            "kv_cache_usage_ratio": 0.0 if sleeping else self.kv_cache_usage,
            "prefix_cache_queries_total": float(self.prefix_cache_queries),
            "prefix_cache_hits_total": float(self.prefix_cache_hits),
            "preemptions_total": float(self.preemptions),
            "prompt_tokens_total": float(self.prompt_tokens),
            "generation_tokens_total": float(self.generation_tokens),
            "sleeping": 1.0 if sleeping else 0.0,
        }


class GaugeLogger(StatLoggerBase):
    """A vLLM stat logger that only copies figures into an :class:`EngineGauges`."""

    def __init__(self, vllm_config: VllmConfig, engine_index: int = 0, *, gauges: EngineGauges) -> None:
        self.engine_index = engine_index
        self.gauges = gauges

    def record(
        self,
        scheduler_stats: SchedulerStats | None,
        iteration_stats: IterationStats | None,
        mm_cache_stats: MultiModalCacheStats | None = None,
        engine_idx: int = 0,
    ) -> None:
        self.gauges.record(scheduler_stats, iteration_stats)

    def log_engine_initialized(self) -> None:
        """Nothing to log: the neuron logs the load itself."""


def gauge_logger_factory(gauges: EngineGauges) -> Callable[[Any, int], StatLoggerBase]:
    """A per-engine stat-logger factory for ``AsyncLLM(stat_loggers=[...])``."""

    def build(vllm_config: Any, engine_index: int = 0) -> StatLoggerBase:
        return GaugeLogger(vllm_config, engine_index, gauges=gauges)

    return build
