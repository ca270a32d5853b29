"""The model registry's lifecycle calls racing each other in one neuron (in-process, no daemon).

The neuron's admin routes run concurrently: a gateway that drains, an operator's CLI and a second
gateway may each unload the same model at once, while its load or wake is still running.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import Overloaded
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


class SlowSleepHarnessDouble(SlowLoadHarnessDouble):
    """Stands in for a GPU harness whose sleep (weights moving to host RAM) takes a while: it
    says when a sleep has begun and finishes it when ``woken_up`` is set, or fails it with
    ``fail`` when that is set instead."""

    def __init__(self) -> None:
        super().__init__()
        self.dozing = asyncio.Event()
        self.woken_up = asyncio.Event()
        self.fail: Exception | None = None

    async def sleep(self, model_id: str) -> None:
        self.dozing.set()
        await self.woken_up.wait()
        if self.fail is not None:
            raise self.fail


async def _ready_model(tmp_path: Path) -> tuple[Any, SlowSleepHarnessDouble]:
    harness = SlowSleepHarnessDouble()
    harness.release.set()  # loads finish at once
    registry = model_registry(tmp_path, [HarnessSpec(name="slow", factory=lambda context: harness)])
    record = await registry.load(ModelProfile(id="m", harness="slow", vram_mb=1))
    assert record.task is not None
    await asyncio.wait_for(record.task, 10)
    assert record.state == "ready"
    return registry, harness


async def test_a_request_arriving_while_its_model_goes_to_sleep_is_refused(tmp_path: Path) -> None:
    """The state says "ready" until the weights have left, but no request may start meanwhile:
    one used to be admitted and run on an engine whose weights were moving out under it."""
    registry, harness = await _ready_model(tmp_path)
    sleeping = asyncio.ensure_future(registry.set_sleep("m", True))
    await asyncio.wait_for(harness.dozing.wait(), 10)
    assert registry.records["m"].state == "ready"  # still, until the harness is done

    with pytest.raises(Overloaded) as refused:
        registry.ready("m")
    assert refused.value.code == "model_sleeping" and refused.value.status == 503
    assert refused.value.retry_after == 2

    harness.woken_up.set()
    assert await asyncio.wait_for(sleeping, 10) == "sleeping"
    with pytest.raises(Overloaded) as asleep:
        registry.ready("m")
    assert asleep.value.code == "model_sleeping"


async def test_a_sleep_that_fails_leaves_its_model_serving(tmp_path: Path) -> None:
    """A harness that cannot put the model to sleep leaves it ready, and requests start again."""
    registry, harness = await _ready_model(tmp_path)
    harness.fail = RuntimeError("offload failed")
    sleeping = asyncio.ensure_future(registry.set_sleep("m", True))
    await asyncio.wait_for(harness.dozing.wait(), 10)
    harness.woken_up.set()
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(sleeping, 10)

    record, _ = registry.ready("m")
    assert record.state == "ready" and not record.dozing
