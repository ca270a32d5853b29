"""The transformers harness passes the harness conformance suite, both ways it can be run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.harness import Harness
from cortex_kernel.testing.conformance import HarnessConformanceTests, run_conformance

if TYPE_CHECKING:
    from cortex_transformers.harness import TransformersHarness

pytestmark = pytest.mark.slow


async def test_run_conformance(
    harness: TransformersHarness, tiny_chat_profile: ModelProfile, tiny_embed_profile: ModelProfile
) -> None:
    assert isinstance(harness, Harness)
    report = await run_conformance(harness, tiny_chat_profile, tiny_embed_profile)
    report.raise_for_failures()
    names = {result.name for result in report.results}
    assert {"chat.close_stops", "chat.context_length", "embedding.embeddings", "chat.unload"} <= names
    assert all(result.status == "passed" for result in report.results), report.summary()


class TestTransformersConformance(HarnessConformanceTests):
    @pytest.fixture
    def conformance_harness(self, harness: TransformersHarness) -> TransformersHarness:
        return harness

    @pytest.fixture
    def conformance_chat_profile(self, tiny_chat_profile: ModelProfile) -> ModelProfile:
        return tiny_chat_profile

    @pytest.fixture
    def conformance_embedding_profile(self, tiny_embed_profile: ModelProfile) -> ModelProfile:
        return tiny_embed_profile
