"""Engine gauges a harness keeps (vLLM's running/waiting/KV cache) reach /metrics and /health."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import generate_latest

from cortex_kernel.config.schema import Catalogue, ModelProfile
from cortex_kernel.harness import HarnessContext, HarnessSpec, ModelDescription
from cortex_neuron.metrics import NeuronMetrics
from tests.neuron.registries import model_registry


class EngineStatsHarness:
    """A test double for an engine-backed harness: only what the registry calls here."""

    name = "engine"
    supports_sleep = False

    def __init__(self, context: HarnessContext) -> None:
        pass

    async def load(self, profile: ModelProfile) -> ModelDescription:
        return ModelDescription(context_length=64)

    async def unload(self, model_id: str) -> None:
        pass

    def engine_stats(self, model_id: str) -> dict[str, float]:
        return {
            "requests_running": 2.0,
            "requests_waiting": 1.0,
            "kv_cache_usage_ratio": 0.25,
            "preemptions_total": 3.0,
        }


def test_engine_stats_are_exported(tmp_path: Path) -> None:
    registry = model_registry(
        tmp_path,
        # A test double, not a whole Harness: only what the registry calls here.
        [HarnessSpec(name="engine", factory=EngineStatsHarness)],  # type: ignore[arg-type]
        Catalogue(models=[ModelProfile(id="m", harness="engine", min_devices=0)]),
    )

    async def load() -> None:
        await registry.wait_loaded(await registry.load(registry.catalogue.models[0]))

    asyncio.run(load())
    record = registry.records["m"]
    stats = registry.engine_stats(record)
    assert stats is not None
    assert stats["requests_waiting"] == 1.0
    text = generate_latest(NeuronMetrics(registry).registry).decode()
    assert 'cortex_neuron_engine_requests_running{model="m"} 2.0' in text
    assert 'cortex_neuron_engine_kv_cache_usage_ratio{model="m"} 0.25' in text
    assert 'cortex_neuron_engine_preemptions_total{model="m"} 3.0' in text
