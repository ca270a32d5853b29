"""The vLLM harness passes the shared harness conformance suite, over a scripted engine.

The GPU run of the same suite, against a real engine, is ``scripts/gpu-check``
(``test_gpu.py`` runs it where there is a GPU).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("vllm", reason="vllm is not installed")

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.testing.conformance import (
    ConformanceOptions,
    HarnessConformanceTests,
    run_conformance,
)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _slow_steps(scripted: Any) -> None:
    # A reply that would take seconds unless closing a stream really stops it.
    scripted.script.step_s = 0.005


async def test_run_conformance(harness: Any, vllm_profile: ModelProfile) -> None:
    report = await run_conformance(harness, vllm_profile)
    report.raise_for_failures()
    names = {result.name: result.status for result in report.results}
    for check in ("chat.close_stops", "chat.context_length", "chat.count_tokens", "chat.unload"):
        assert names[check] == "passed", report.summary()


class TestVllmConformance(HarnessConformanceTests):
    conformance_options = ConformanceOptions(stop_timeout_s=2.0)

    @pytest.fixture
    def conformance_harness(self, harness: Any) -> Any:
        return harness

    @pytest.fixture
    def conformance_chat_profile(self, vllm_profile: ModelProfile) -> ModelProfile:
        return vllm_profile

    @pytest.fixture
    def conformance_embedding_profile(self) -> ModelProfile | None:
        return None
