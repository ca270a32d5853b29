"""Loading, describing, unloading and the plugin entry point of the transformers harness."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import NotFound
from cortex_kernel.harness import Harness, HarnessContext
from cortex_kernel.plugins import build_plugin_manager

if TYPE_CHECKING:
    from cortex_transformers.harness import TransformersHarness

pytestmark = pytest.mark.slow


async def test_load_is_idempotent_and_describes_the_model(
    harness: TransformersHarness, tiny_chat_profile: ModelProfile
) -> None:
    first = await harness.load(tiny_chat_profile)
    model = harness.handles("tiny-chat").model
    second = await harness.load(tiny_chat_profile)
    assert first == second
    assert harness.handles("tiny-chat").model is model
    expected_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert first.memory_bytes == expected_bytes
    assert first.context_length == 40960 and first.devices == [] and first.task == "chat"
    assert {"chat", "completions", "tools", "reasoning"} <= set(first.capabilities)


async def test_unload_frees_the_model(harness: TransformersHarness, tiny_chat_profile: ModelProfile) -> None:
    await harness.load(tiny_chat_profile)
    model = weakref.ref(harness.handles("tiny-chat").model)
    await harness.unload("tiny-chat")
    gc.collect()
    assert model() is None, "something still holds the unloaded model"
    with pytest.raises(NotFound):
        harness.describe("tiny-chat")
    await harness.unload("tiny-chat")  # unloading an absent model is a no-op


async def test_option_switches_turn_parsers_off(harness: TransformersHarness, tiny_chat_model: Path) -> None:
    from cortex_kernel.config.schema import ModelProfile

    profile = ModelProfile(
        id="plain",
        harness="transformers",
        source=str(tiny_chat_model),
        min_devices=0,
        options={"reasoning": "off", "tool_calls": "off", "dtype": "bfloat16"},
    )
    description = await harness.load(profile)
    assert description.capabilities == ["chat", "completions"]
    assert str(harness.handles("plain").model.dtype) == "torch.bfloat16"


async def test_unknown_model_everywhere(harness: TransformersHarness) -> None:
    with pytest.raises(NotFound):
        harness.describe("nope")
    with pytest.raises(NotFound):
        await harness.sleep("nope")
    with pytest.raises(NotFound):
        await harness.embed("nope", ["x"], normalize=True)


def test_registered_through_the_entry_point(tmp_path: Path) -> None:
    from cortex_transformers.harness import TransformersHarness

    pm = build_plugin_manager()
    specs = [spec for specs in pm.hook.register_harnesses() for spec in specs or []]
    spec = next(spec for spec in specs if spec.name == "transformers")
    built = spec.factory(HarnessContext(cache_dir=tmp_path))
    try:
        assert isinstance(built, Harness)
        assert built.name == "transformers"
    finally:
        assert isinstance(built, TransformersHarness)
        built.close()
