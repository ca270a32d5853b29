"""The transformers harness's size estimate before a load, which the neuron checks its budget with."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cortex_kernel.config.schema import ModelProfile

if TYPE_CHECKING:
    from cortex_transformers.harness import TransformersHarness

pytestmark = pytest.mark.slow


def profile(source: str | Path, **fields: Any) -> ModelProfile:
    return ModelProfile(id="m", harness="transformers", source=str(source), min_devices=0, **fields)


@pytest.mark.parametrize("fixture", ["tiny_chat_model", "tiny_embed_model"])
async def test_the_estimate_matches_what_the_loaded_model_measures(
    harness: TransformersHarness, request: pytest.FixtureRequest, fixture: str
) -> None:
    source = request.getfixturevalue(fixture)
    task = "embedding" if "embed" in fixture else "chat"
    estimate = harness.estimate_bytes(profile(source, task=task))
    measured = (await harness.load(profile(source, task=task))).memory_bytes
    assert estimate is not None and measured is not None
    # Parameters are exact; buffers (rotary frequencies, position ids) are not in the checkpoint.
    assert 0.95 * measured <= estimate <= measured


def test_the_estimate_follows_the_load_dtype(harness: TransformersHarness, tiny_chat_model: Path) -> None:
    full = harness.estimate_bytes(profile(tiny_chat_model))
    half = harness.estimate_bytes(profile(tiny_chat_model, options={"dtype": "bfloat16"}))
    assert half is not None
    assert half * 2 == full


def test_no_estimate_for_what_cannot_be_read(harness: TransformersHarness, tmp_path: Path) -> None:
    assert harness.estimate_bytes(profile("some-org/not-downloaded")) is None
    assert harness.estimate_bytes(profile(tmp_path / "models" / "missing")) is None
    assert harness.estimate_bytes(profile("synthetic:no-such-model")) is None
