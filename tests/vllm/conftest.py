"""Fixtures for the vLLM harness tests.

Most modules here need the ``vllm`` package and skip as a whole, saying so, where it is missing
(``make test-vllm`` runs them in the environment ``scripts/vllm-env`` prepares); the GPU module
also needs an NVIDIA GPU. Modules that test what must work without vLLM (the plugin, the
options) run everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.harness import HarnessContext
from tests.hubcache import cached_repo

_HERE = Path(__file__).parent

# vLLM's own code reads request fields it has deprecated (``max_tokens`` in favour of
# ``max_completion_tokens``), and pydantic reports each read as a DeprecationWarning attributed to
# vLLM. Not ours to fix; only tests in this directory get the filter, and only for vLLM's modules.
_VLLM_WARNING_FILTERS = ("ignore::DeprecationWarning:vllm.*",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            for spec in _VLLM_WARNING_FILTERS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture
def vllm_profile(tiny_chat_model: Path) -> ModelProfile:
    """The tiny synthetic chat model, with a context small enough to overflow quickly."""
    return ModelProfile(
        id="tiny-vllm",
        harness="vllm",
        source=str(tiny_chat_model),
        context_length=4096,
        options={"tool_parser": "hermes", "reasoning_parser": "qwen3"},
    )


@pytest.fixture
def vllm_context(tiny_model_root: Path, tmp_path: Path) -> HarnessContext:
    return HarnessContext(model_roots=(tiny_model_root,), cache_dir=tmp_path / "cache")


HUB_ID = "cortex-test/tiny-chat"


@pytest.fixture
def harness_hub_snapshot(vllm_context: HarnessContext, tiny_chat_model: Path) -> Path:
    """The tiny chat model as ``HUB_ID`` in the harness's hub cache (``<cache_dir>/hub``)."""
    return cached_repo(vllm_context.cache_dir / "hub", HUB_ID, tiny_chat_model)


@pytest.fixture
def scripted() -> Any:
    """A factory of scripted engines sharing one fake NVML probe (``scripted.probe``)."""
    from tests.vllm.scripted import FakeProbe, ScriptedFactory

    return ScriptedFactory(probe=FakeProbe())


@pytest.fixture
def harness(vllm_context: HarnessContext, scripted: Any) -> Any:
    """A vLLM harness over scripted engines; every engine still running is shut down after."""
    from cortex_vllm.harness import VllmHarness

    built = VllmHarness(vllm_context, engine_factory=scripted, probe=scripted.probe)
    yield built
    built.close()
