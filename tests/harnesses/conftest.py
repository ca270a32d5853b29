"""Fixtures for the transformers harness tests: a fresh harness per test, rooted at the tiny models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.harness import HarnessContext

if TYPE_CHECKING:
    from cortex_transformers.harness import TransformersHarness


@pytest.fixture
def harness_context(tiny_model_root: Path, tmp_path: Path) -> HarnessContext:
    return HarnessContext(model_roots=(tiny_model_root, tmp_path / "models"), cache_dir=tmp_path / "cache")


@pytest.fixture
def make_harness(
    tiny_chat_model: Path, tiny_embed_model: Path
) -> Iterator[Callable[[HarnessContext], TransformersHarness]]:
    """Build harnesses from a context; every one is closed after the test."""
    from cortex_transformers.harness import TransformersHarness

    built: list[TransformersHarness] = []

    def make(context: HarnessContext) -> TransformersHarness:
        built.append(TransformersHarness(context))
        return built[-1]

    yield make
    for harness in built:
        harness.close()


@pytest.fixture
def harness(
    make_harness: Callable[[HarnessContext], TransformersHarness], harness_context: HarnessContext
) -> TransformersHarness:
    """A transformers harness whose model roots are the tiny models and ``tmp_path / "models"``."""
    return make_harness(harness_context)


@pytest.fixture
async def loaded(harness: TransformersHarness, tiny_chat_profile: ModelProfile) -> TransformersHarness:
    """The harness with the tiny chat model loaded."""
    await harness.load(tiny_chat_profile)
    return harness
