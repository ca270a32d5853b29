"""The GPU check (``scripts/gpu-check``) against a real vLLM engine; only where there is a GPU."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vllm is not installed")

from cortex_vllm.devices import count_gpus

GPUS, WHY = count_gpus()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(GPUS == 0, reason=f"no NVIDIA GPU: {WHY}"),
]


@pytest.mark.timeout(1200)
def test_gpu_check_passes_on_the_synthetic_model(capsys: pytest.CaptureFixture[str]) -> None:
    from cortex_vllm.selfcheck import main

    status = main([])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "all" in printed and "checks passed" in printed
