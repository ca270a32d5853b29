"""Loads of different models at once through one transformers harness.

``from_pretrained`` swaps process-wide state while it builds a model (``PreTrainedModel.tie_weights``
becomes a no-op, ``torch.linspace`` is wrapped, torch's default dtype is changed) and puts it
back afterwards. Two loads on two threads interleave those swaps: one restores what the other
patched, tied weights stay on the meta device ("Cannot copy out of meta tensor"), and every
later load in the process fails the same way. These tests load several models at once, then
one more, and check each of them generates.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.openai_wire import ChatRequest

if TYPE_CHECKING:
    from cortex_transformers.harness import TransformersHarness

pytestmark = pytest.mark.slow


def chat_profile(model_id: str, source: str) -> ModelProfile:
    return ModelProfile(id=model_id, harness="transformers", source=source, min_devices=0)


async def generates(harness: TransformersHarness, model_id: str) -> int:
    request = ChatRequest(
        model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0
    )
    deltas = [delta async for delta in harness.chat(model_id, request)]
    usage = deltas[-1].usage
    assert usage is not None
    return usage.completion_tokens


@pytest.mark.parametrize("count", [2, 4])
async def test_concurrent_loads_of_different_models_all_succeed(
    harness: TransformersHarness, tiny_chat_model: Path, count: int
) -> None:
    from transformers.modeling_utils import PreTrainedModel

    tie_weights = PreTrainedModel.tie_weights
    sources = [str(tiny_chat_model), "synthetic:tiny-chat"]
    for round_ in range(3):  # the interleaving is a race: give it several chances to show
        profiles = [chat_profile(f"m{round_}-{i}", sources[i % 2]) for i in range(count)]
        results = await asyncio.gather(*(harness.load(p) for p in profiles), return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert [await generates(harness, p.id) for p in profiles] == [3] * count
        for profile in profiles:
            await harness.unload(profile.id)
    # Nothing process-wide was left swapped, so a later load (and any other library user) works.
    assert PreTrainedModel.tie_weights is tie_weights
    await harness.load(chat_profile("later", str(tiny_chat_model)))
    assert await generates(harness, "later") == 3
