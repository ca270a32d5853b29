"""The model registry's lifecycle calls racing each other in one neuron (in-process, no daemon).

The neuron's admin routes run concurrently: a gateway that drains, an operator's CLI and a second
gateway may each unload the same model at once, while its load or wake is still running.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.harness import HarnessSpec, ModelDescription
from tests.neuron.registries import model_registry


class SlowLoadHarnessDouble:
    """Stands in for a GPU harness whose load takes a while: it says when a load has begun, loads
    when ``release`` is set, and counts the unloads it is asked for."""

    supports_sleep = True

    def __init__(self) -> None:
        self.loading = asyncio.Event()
        self.release = asyncio.Event()
        self.unloads = 0

    async def load(self, profile: ModelProfile) -> ModelDescription:
        self.loading.set()
        await self.release.wait()
        return ModelDescription(memory_bytes=0)

    async def unload(self, model_id: str) -> None:
        self.unloads += 1
        await asyncio.sleep(0)

    def __getattr__(self, name: str) -> Any:  # the generation calls this test never makes
        raise AttributeError(name)


async def test_two_unloads_of_a_model_still_loading_both_answer_as_an_unload_does(tmp_path: Path) -> None:
    """Both unloads cancel the load and wait for it to end; the second used to find the record
    already gone and fail with a KeyError (a 500 on ``POST /models/unload``)."""
    harness = SlowLoadHarnessDouble()
    spec = HarnessSpec(name="slow", factory=lambda context: harness)
    registry = model_registry(tmp_path, [spec])
    record = await registry.load(ModelProfile(id="m", harness="slow", vram_mb=1))
    assert record.state == "loading"
    await asyncio.wait_for(harness.loading.wait(), 10)  # the load is in the harness now

    results = await asyncio.gather(registry.unload("m"), registry.unload("m"), return_exceptions=True)

    # Each answers as an unload does: gone, or going (the other one is unloading it now).
    assert set(results) <= {"absent", "unloading"} and "absent" in results, results
    assert "m" not in registry.records
    assert harness.unloads == 1
